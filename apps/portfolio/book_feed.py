"""What the matcher needs to know of resting orders: the book's entries, and a Redis stream of changes.

Placing a resting order (or cancelling, expiring, triggering one) appends a change after commit; the
matcher reads the stream from where it stood when it loaded the open orders from MongoDB, so it
learns of new orders within one read. A change lost to a Redis outage is repaired by the matcher's
periodic reload (MATCHER_RESYNC_SECONDS); a stale entry is harmless, since a fill re-checks the
order's state in its transaction.
"""

import logging
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any

import redis
from django_mongodb_backend import transaction

from apps.core.clock import epoch_ms
from apps.core.redis import key, redis_client
from apps.portfolio.models import Order, OrderType

logger = logging.getLogger(__name__)

STREAM_LENGTH = 100_000  # approximate cap: changes are only needed until every matcher has read them
ADD, REMOVE = "add", "remove"


def book_stream_key() -> str:
    return key("order_book")


def cents(price: Decimal | None) -> int | None:
    return None if price is None else int((price * 100).to_integral_value())


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """One order in the matcher's book: prices in whole cents (ticks are two-decimal prices)."""

    id: str
    symbol: str
    side: str
    type: str
    limit_cents: int | None
    stop_cents: int | None
    triggered: bool
    expires_ms: int | None = None  # a day order's end, milliseconds since the epoch

    @property
    def waits_for_stop(self) -> bool:
        return self.type in (OrderType.STOP, OrderType.STOP_LIMIT) and not self.triggered

    @classmethod
    def of(cls, order: Order) -> "RestingOrder":
        return cls(
            str(order.pk),
            order.symbol,
            order.side,
            order.type,
            cents(order.limit_price),
            cents(order.stop_price),
            order.triggered,
            None if order.expires_at is None else epoch_ms(order.expires_at),
        )

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "RestingOrder":
        def price(name: str) -> int | None:
            value = document.get(name)
            return None if value is None else cents(value.to_decimal())

        return cls(
            str(document["_id"]),
            document["symbol"],
            document["side"],
            document["type"],
            price("limit_price"),
            price("stop_price"),
            bool(document.get("triggered")),
            # The driver returns naive UTC datetimes.
            None if document.get("expires_at") is None else epoch_ms(document["expires_at"].replace(tzinfo=UTC)),
        )

    def as_fields(self, op: str) -> dict[str, str]:
        return {
            "op": op,
            "id": self.id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "limit": "" if self.limit_cents is None else str(self.limit_cents),
            "stop": "" if self.stop_cents is None else str(self.stop_cents),
            "triggered": "1" if self.triggered else "",
            "expires": "" if self.expires_ms is None else str(self.expires_ms),
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> tuple[str, "RestingOrder"]:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        entry = cls(
            text["id"],
            text["symbol"],
            text["side"],
            text["type"],
            int(text["limit"]) if text["limit"] else None,
            int(text["stop"]) if text["stop"] else None,
            bool(text["triggered"]),
            int(text["expires"]) if text.get("expires") else None,
        )
        return text["op"], entry


def book_change_after_commit(op: str, order: Order) -> None:
    """Tell the matchers once the transaction commits (at once outside one)."""
    entry = RestingOrder.of(order)
    transaction.on_commit(lambda: book_change_send(op, entry))


def book_change_send(op: str, entry: RestingOrder) -> None:
    try:
        redis_client().xadd(book_stream_key(), entry.as_fields(op), maxlen=STREAM_LENGTH, approximate=True)  # type: ignore[arg-type]
    except redis.RedisError as error:  # the matcher's periodic reload finds the order
        logger.warning("order book change %s %s not sent: %s", op, entry.id, error)


def book_position(client: redis.Redis) -> str:
    """The id of the newest change: read from here after loading the open orders."""
    newest: Any = client.xrevrange(book_stream_key(), count=1)
    return newest[0][0].decode() if newest else "0-0"


def book_changes(client: redis.Redis, after: str, *, count: int = 1000) -> tuple[list[tuple[str, RestingOrder]], str]:
    """Changes after `after` (no waiting), and the position to read from next."""
    reply: Any = client.xread({book_stream_key(): after}, count=count)
    changes: list[tuple[str, RestingOrder]] = []
    for _, entries in reply or []:
        for entry_id, fields in entries:
            changes.append(RestingOrder.from_fields(fields))
            after = entry_id.decode()
    return changes, after
