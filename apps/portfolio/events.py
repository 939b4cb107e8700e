"""The trader's own events: what happened to their orders and invoices, published after it is committed.

Each event becomes one `{"type":"account","seq":N,"event":...,"timestamp":...,<payload>}` frame on the
trader's WebSocket (`/ws/market/`, authenticated connections only), numbered per trader so a client that
reconnects resumes where it stopped (`apps/core/account_events.py`, `apps/market/feed/account.py`).

Publishing never fails the trade that caused it: it waits for the surrounding transaction to commit
(nothing is announced that was rolled back), and when Redis refuses, the event is logged, counted and
dropped (the state itself is in MongoDB; a client that missed it sees the next event's number jump
and resumes, or refreshes on `account_gap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, get_args

import redis
from bson import ObjectId
from django_mongodb_backend import transaction

from apps.core import account_events
from apps.core.clock import now_ms
from apps.core.metrics import ACCOUNT_EVENTS
from apps.market.feed.protocol import AccountEventName
from apps.portfolio.models import Invoice, Order, Trader

logger = logging.getLogger(__name__)

# order_accepted, order_filled, order_cancelled, order_expired, invoice_ready (the feed's contract)
EVENTS = frozenset(get_args(AccountEventName))
# Frames stay within the feed's 1 KB (Property 23): a larger payload keeps only these fields.
MAX_FRAME_BYTES = 1024
ESSENTIAL_FIELDS = ("order", "id", "status", "symbol", "side", "quantity", "price", "cash", "buying_power")
_USERS_CACHED = 10_000
_user_of_trader: dict[str, str] = {}


def _plain(value: Any) -> Any:
    """A JSON value for `value`: money as a string and times in ISO 8601, as the API shows them."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _user_id(trader_id: object) -> str | None:
    """The user behind a trader (what a WebSocket knows), cached per process: it never changes."""
    cached = _user_of_trader.get(str(trader_id))
    if cached is not None:
        return cached
    found = Trader.objects.filter(pk=ObjectId(str(trader_id))).values_list("user_id", flat=True).first()
    if found is None:
        return None
    if len(_user_of_trader) >= _USERS_CACHED:
        _user_of_trader.clear()
    _user_of_trader[str(trader_id)] = str(found)
    return str(found)


def event_fields(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The frame's fields of one event: its name, a timestamp and the payload as JSON values, within 1 KB."""
    fields = {"event": event, "timestamp": now_ms()}
    fields.update({k: _plain(v) for k, v in payload.items() if k not in {"type", "seq", "event", "timestamp"}})
    if len(account_events.encode_body(fields)) + 40 > MAX_FRAME_BYTES:
        fields = {k: v for k, v in fields.items() if k in {"event", "timestamp", *ESSENTIAL_FIELDS}}
    return fields


def _send(user_id: str, events: list[dict[str, Any]], once: str | None) -> None:
    try:
        account_events.append(user_id, *events, once=once)
    except redis.RedisError:
        ACCOUNT_EVENTS.labels(outcome="dropped").inc(len(events))
        names = ", ".join(e["event"] for e in events)
        logger.warning("account events (%s) of user %s not published: Redis failed", names, user_id, exc_info=True)
        return
    ACCOUNT_EVENTS.labels(outcome="published").inc(len(events))


def publish_account_events(
    trader_id: object,
    events: list[tuple[str, dict[str, Any]]],
    *,
    user_id: object | None = None,
    once: str | None = None,
) -> None:
    """Announce `events` (name, payload), in order, to the trader's live connections once the current
    transaction commits (at once outside one), in one Redis round trip. A payload holds the order's fields
    (or `{"order": {...}}`), and `cash` / `buying_power` when known. `user_id` saves a lookup; `once` names
    the announcement so that a repeated one is not sent again (`account_events.append`)."""
    for event, _payload in events:
        if event not in EVENTS:
            raise ValueError(f"event: expected one of {', '.join(sorted(EVENTS))}, got {event!r}")
    fields = [event_fields(event, payload) for event, payload in events]

    def send() -> None:
        user = str(user_id) if user_id is not None else _user_id(trader_id)
        if user is None:
            logger.warning("account events: trader %s has no user", trader_id)
            return
        _send(user, fields, once)

    transaction.on_commit(send)


def publish_account_event(
    trader_id: object, event: str, payload: dict[str, Any], *, user_id: object | None = None, once: str | None = None
) -> None:
    """One event (see publish_account_events): the order paths' entry point."""
    publish_account_events(trader_id, [(event, payload)], user_id=user_id, once=once)


def order_fields(order: Order) -> dict[str, Any]:
    """An order as its events show it: the API's fields (apps/portfolio/schemas.py OrderOut), money as strings."""

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return {
        "id": str(order.pk),
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "quantity": order.quantity,
        "type": order.type,
        "limit_price": text(order.limit_price),
        "stop_price": text(order.stop_price),
        "time_in_force": order.time_in_force,
        "status": order.status,
        "price": text(order.price),
        "amount": text(order.amount),
        "reason": order.reason,
        "created_at": _plain(order.created_at),
        "invoice_url": f"/api/v1/trades/{order.pk}/invoice",
    }


def publish_invoice_ready(invoice: Invoice) -> None:
    """The trade's PDF confirmation can be downloaded now: said once, however often its job runs."""
    fields = {"id": str(invoice.order_id), "invoice_number": invoice.number, "invoice_status": "ready"}
    fields["invoice_url"] = f"/api/v1/trades/{invoice.order_id}/invoice"
    publish_account_event(invoice.trader_id, "invoice_ready", fields, once=f"invoice_ready:{invoice.order_id}")
