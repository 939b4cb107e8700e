"""What an order asks, checked before it is sent to the engine, and what the engine's answer becomes.

Every check here names the field at fault (OrderRejected: a code, the field, an HTTP status); the engine
decides what needs the account (buying power, shares, a repeated client_order_id).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bson import ObjectId

from apps.portfolio.engine.commands import IMMEDIATE
from apps.portfolio.models import Order, OrderType, Side, TimeInForce

QUANTITY_MAX = 1_000_000
CLIENT_ORDER_ID_MAX = 48
CENT = Decimal("0.01")
PRICE_MAX = Decimal("1000000.00")
PRICE_STEP = Decimal("0.01")
# Which prices each order type needs; any other price given is refused (422 naming it).
PRICES_OF = {
    OrderType.MARKET: (),
    OrderType.LIMIT: ("limit_price",),
    OrderType.STOP: ("stop_price",),
    OrderType.STOP_LIMIT: ("limit_price", "stop_price"),
}


class OrderRejected(Exception):
    """An order that cannot be executed: a machine-readable code, the field at fault, an HTTP status."""

    def __init__(self, code: str, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class OrderResult:
    order: Order
    created: bool  # False: a replay of an earlier request with the same client_order_id


@dataclass(frozen=True)
class OrderTerms:
    """How an order executes: at once (market) or when the price reaches limit_price / stop_price."""

    type: str = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str = TimeInForce.DAY

    def fields(self) -> dict[str, Any]:
        return asdict(self)


def _price_checked(name: str, value: Decimal) -> Decimal:
    try:
        exact = value.is_finite() and value == value.quantize(PRICE_STEP)
    except InvalidOperation:
        exact = False
    if not exact or not Decimal("0") < value <= PRICE_MAX:
        raise OrderRejected(f"invalid_{name}", name, f"{name} must be a price from 0.01 to {PRICE_MAX}, in cents")
    return value.quantize(PRICE_STEP)


def terms_validated(terms: OrderTerms) -> OrderTerms:
    """The terms with prices normalised, or OrderRejected (422) naming the field of a bad combination."""
    if terms.type not in OrderType.values:
        raise OrderRejected("invalid_type", "type", f"type must be one of {', '.join(OrderType.values)}")
    if terms.time_in_force not in TimeInForce.values:
        raise OrderRejected(
            "invalid_time_in_force", "time_in_force", f"time_in_force must be one of {', '.join(TimeInForce.values)}"
        )
    if terms.time_in_force in IMMEDIATE and terms.type not in (OrderType.MARKET, OrderType.LIMIT):
        detail = (
            f"time_in_force {terms.time_in_force} is for market and limit orders: a {terms.type} order waits for "
            "its stop price, which an order that must fill at once cannot"
        )
        raise OrderRejected("invalid_time_in_force", "time_in_force", detail)
    prices: dict[str, Decimal | None] = {}
    for name in ("limit_price", "stop_price"):
        value = getattr(terms, name)
        needed = name in PRICES_OF[OrderType(terms.type)]
        if needed and value is None:
            raise OrderRejected(f"missing_{name}", name, f"{name} is required for a {terms.type} order")
        if not needed and value is not None:
            raise OrderRejected(f"unexpected_{name}", name, f"{name} is not allowed for a {terms.type} order")
        prices[name] = None if value is None else _price_checked(name, value)
    return replace(terms, limit_price=prices["limit_price"], stop_price=prices["stop_price"])


def order_validated(*, side: str, quantity: int, client_order_id: str) -> None:
    if side not in Side.values:
        raise OrderRejected("invalid_side", "side", f"side must be one of {', '.join(Side.values)}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= QUANTITY_MAX:
        raise OrderRejected("invalid_quantity", "quantity", f"quantity must be a whole number from 1 to {QUANTITY_MAX}")
    if not 1 <= len(client_order_id) <= CLIENT_ORDER_ID_MAX or not client_order_id.isprintable():
        raise OrderRejected(
            "invalid_client_order_id",
            "client_order_id",
            f"client_order_id must be 1 to {CLIENT_ORDER_ID_MAX} printable characters",
        )


def cents(price: Decimal | None) -> int | None:
    return None if price is None else int((price * 100).to_integral_value())


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def order_of(fields: dict[str, Any], *, trader_id: ObjectId) -> Order:
    """The Order an engine answer describes (its API fields), as a model instance; nothing is read or saved."""
    order = Order(
        id=ObjectId(fields["id"]),
        trader_id=trader_id,
        client_order_id=fields["client_order_id"],
        symbol=fields["symbol"],
        side=fields["side"],
        quantity=int(fields["quantity"]),
        type=fields["type"],
        limit_price=_decimal(fields.get("limit_price")),
        stop_price=_decimal(fields.get("stop_price")),
        time_in_force=fields["time_in_force"],
        reserved_cash=_decimal(fields.get("reserved_cash")) or Decimal("0.00"),
        price=_decimal(fields.get("price")),
        amount=_decimal(fields.get("amount")),
        status=fields["status"],
        reason=fields.get("reason", ""),
        created_at=datetime.fromisoformat(fields["created_at"]),
        expires_at=_moment(fields.get("expires_at")),
        closed_at=_moment(fields.get("closed_at")),
    )
    order._state.adding = False
    return order


def rejection_of(answer: dict[str, Any]) -> OrderRejected:
    return OrderRejected(
        str(answer.get("code", "refused")),
        str(answer.get("field", "")),
        str(answer.get("detail", "")),
        int(answer["s"]),
    )
