"""What one batch decided: the writes (for the journal) and the answers and events (for publishing).

The rules fill an `Effects` while they decide; nothing here does I/O. Orders are shown the way the API
shows them (apps/portfolio/schemas.py OrderOut): money as decimal strings, times in ISO 8601.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bson import ObjectId

from apps.core.clock import moment
from apps.portfolio.engine.state import Account, OrderState


def money(cents: int | None) -> str | None:
    return None if cents is None else str(Decimal(cents).scaleb(-2))


def iso(milliseconds: int | None) -> str | None:
    return None if milliseconds is None else moment(milliseconds).isoformat()


@dataclass(frozen=True)
class Reply:
    """The answer to one caller: an HTTP-like status and a body (`order`, or `code`/`field`/`detail`)."""

    reply_to: str
    request_id: str
    status: int
    body: dict[str, Any]

    def message(self) -> dict[str, Any]:
        return {"r": self.request_id, "s": self.status, **self.body}


@dataclass(frozen=True)
class InvoiceRecord:
    """A trade's confirmation, numbered per account and signed in the batch (its PDF is made on first download)."""

    order_id: ObjectId
    account_id: ObjectId
    number: int
    verification_code: str
    created_ms: int


@dataclass
class Effects:
    new_orders: dict[ObjectId, OrderState] = field(default_factory=dict)
    changed_orders: dict[ObjectId, OrderState] = field(default_factory=dict)
    invoices: list[InvoiceRecord] = field(default_factory=list)
    accounts: dict[ObjectId, Account] = field(default_factory=dict)
    positions: set[tuple[ObjectId, str]] = field(default_factory=set)
    prices: dict[str, int] = field(default_factory=dict)
    events: list[tuple[ObjectId, str, dict[str, Any]]] = field(default_factory=list)  # (user id, name, payload)
    replies: list[Reply] = field(default_factory=list)
    commands: int = 0
    at_ms: int = 0  # the time of the batch's newest command

    def order_written(self, order: OrderState) -> None:
        if order.id not in self.new_orders:
            self.changed_orders[order.id] = order

    def account_written(self, account: Account, symbol: str | None = None) -> None:
        self.accounts[account.id] = account
        if symbol is not None:
            self.positions.add((account.id, symbol))

    def announce(self, account: Account, name: str, order: OrderState, **extra: Any) -> None:
        payload = {
            **order_fields(order),
            "cash": money(account.cash),
            "reserved_cash": money(account.reserved),
            "buying_power": money(account.buying_power),
            **extra,
        }
        self.events.append((account.user_id, name, payload))

    def answer(self, reply_to: str, request_id: str, status: int, **body: Any) -> None:
        self.replies.append(Reply(reply_to, request_id, status, body))

    def refuse(self, reply_to: str, request_id: str, status: int, code: str, field_name: str, detail: str) -> None:
        self.answer(reply_to, request_id, status, code=code, field=field_name, detail=detail)

    @property
    def writes(self) -> bool:
        return bool(self.new_orders or self.changed_orders or self.accounts)


def order_fields(order: OrderState) -> dict[str, Any]:
    """An order in the API's shape (OrderOut), as replies and account events carry it."""
    is_open = order.status == "open"
    filled = order.status == "filled"
    return {
        "id": str(order.id),
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "quantity": order.quantity,
        "type": order.type,
        "limit_price": money(order.limit_cents),
        "stop_price": money(order.stop_cents),
        "time_in_force": order.time_in_force,
        "price": money(order.price_cents),
        "amount": money(order.amount_cents),
        "status": order.status,
        "reason": order.reason,
        "reserved_cash": money(order.reserved_cents if is_open else 0),
        "created_at": iso(order.created_ms),
        "expires_at": iso(order.expires_ms) if is_open else None,
        "closed_at": iso(order.closed_ms),
        "invoice_url": f"/api/v1/trades/{order.id}/invoice" if filled else None,
    }
