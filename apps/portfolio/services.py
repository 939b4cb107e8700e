"""Writes for traders: accounts, orders and invoices. Every change of an existing account is a command to the
order engine (apps/portfolio/engine/, ADR 0008), its only writer; these functions check what was asked,
send it and turn the engine's answer into a result.

`place_order_async` / `order_cancel_async` are the web's (awaited on the event loop); `place_order`,
`order_cancel` and `account_adjust` block, for admin, management commands and tests.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from functools import partial
from typing import Any

from bson import ObjectId
from django.contrib.auth.models import User
from django.utils import timezone
from django_mongodb_backend import transaction

from apps.core.clock import epoch_ms
from apps.core.metrics import INVOICES_RENDERED
from apps.core.tokens import token_create
from apps.market.selectors import symbol_by_ticker
from apps.portfolio.engine import journal
from apps.portfolio.engine.client import EngineUnavailable, submit, submit_blocking
from apps.portfolio.engine.commands import Adjust, Caller, Cancel, CancelAll, Close, Place, PositionChange
from apps.portfolio.invoices import render_invoice_pdf
from apps.portfolio.models import Invoice, Order, Trader
from apps.portfolio.order_terms import (
    CENT,
    CLIENT_ORDER_ID_MAX,
    QUANTITY_MAX,
    OrderRejected,
    OrderResult,
    OrderTerms,
    cents,
    order_of,
    order_validated,
    rejection_of,
    terms_validated,
)
from apps.portfolio.selectors import order_get

__all__ = [
    "CENT",
    "CLIENT_ORDER_ID_MAX",
    "QUANTITY_MAX",
    "EngineUnavailable",
    "OrderRejected",
    "OrderResult",
    "OrderTerms",
    "account_adjust",
    "cancel_all_async",
    "close_asked",
    "close_position_async",
    "order_cancel",
    "order_cancel_async",
    "place_order",
    "place_order_async",
    "trader_create",
]

logger = logging.getLogger(__name__)
UNAVAILABLE = ("engine_unavailable", "client_order_id", "orders cannot be taken right now; retry", 503)


class TraderError(ValueError):
    """A request to create or change a trader that cannot be honoured."""


def trader_create(
    *, username: str, cash: Decimal, staff: bool = False, superuser: bool = False, password: str | None = None
) -> tuple[Trader, str]:
    """Create a user, its trader account and an API token; returns the token once.

    `staff` opens the admin and ops pages with the permissions an operator grants;
    only `superuser` holds every permission. The account is new: the engine loads it on first use.
    """
    username = username.strip()
    if not username:
        raise TraderError("username: must not be empty")
    if not cash.is_finite() or cash < 0:
        raise TraderError(f"cash: must be a non-negative amount, got {cash}")
    cash = cash.quantize(CENT)
    if User.objects.filter(username=username).exists():
        raise TraderError(f"username: {username!r} already exists")
    with transaction.atomic():
        user = User.objects.create_user(
            username=username, password=password, is_staff=staff or superuser, is_superuser=superuser
        )
        trader_id = journal.account_insert(user_id=user.pk, cash=cash)
        token = token_create(user=user)
    trader = Trader.objects.get(pk=trader_id)
    trader.user = user
    return trader, token


# --- Orders ---------------------------------------------------------------------------------------------


def _symbol_checked(symbol: str) -> str:
    listing = symbol_by_ticker(symbol)
    if listing is None:
        raise OrderRejected("unknown_symbol", "symbol", f"unknown symbol {symbol!r}")
    if not listing.active:
        raise OrderRejected("symbol_halted", "symbol", f"{symbol} is halted and cannot be traded", status=409)
    return symbol


def _place(caller: Caller, *, symbol: str, side: str, quantity: int, client_order_id: str, terms: OrderTerms) -> Place:
    return Place(
        caller=caller,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        quantity=quantity,
        type=terms.type,
        limit_cents=cents(terms.limit_price),
        stop_cents=cents(terms.stop_price),
        time_in_force=terms.time_in_force,
    )


def order_asked(
    *, symbol: str, side: str, quantity: int, client_order_id: str | None, terms: OrderTerms | None
) -> dict[str, Any]:
    """The order's fields checked and normalised (OrderRejected naming the field), a client_order_id given."""
    client_order_id = uuid.uuid4().hex if client_order_id is None else client_order_id
    symbol = symbol.strip().upper()
    order_validated(side=side, quantity=quantity, client_order_id=client_order_id)
    checked = terms_validated(terms or OrderTerms())
    return {
        "symbol": _symbol_checked(symbol),
        "side": side,
        "quantity": quantity,
        "client_order_id": client_order_id,
        "terms": checked,
    }


def order_result(answer: dict[str, Any], *, trader_id: ObjectId) -> OrderResult:
    """The engine's answer as a result, or the OrderRejected it says."""
    if "order" not in answer or int(answer["s"]) >= 300:
        raise rejection_of(answer)
    return OrderResult(order=order_of(answer["order"], trader_id=trader_id), created=int(answer["s"]) == 201)


def place_order(
    *,
    trader: Trader,
    symbol: str,
    side: str,
    quantity: int,
    client_order_id: str | None = None,
    terms: OrderTerms | None = None,
) -> OrderResult:
    """Place an order, exactly once per (trader, client_order_id), and wait for the engine's decision.

    A market order, or one whose price is marketable now, executes at the engine's latest price; any other
    rests with its cash or shares reserved until a tick crosses it. Raises OrderRejected for anything that
    cannot be placed; nothing is written then."""
    asked = order_asked(symbol=symbol, side=side, quantity=quantity, client_order_id=client_order_id, terms=terms)
    try:
        answer = submit_blocking(partial(_place, **asked), account_id=trader.pk, user_id=trader.user_id)
    except EngineUnavailable:
        raise OrderRejected(*UNAVAILABLE) from None
    return order_result(answer, trader_id=trader.pk)


async def place_order_async(*, account_id: ObjectId, user_id: Any, asked: dict[str, Any]) -> OrderResult:
    """`place_order` for the web, awaited on the event loop (`asked`: from `order_asked`)."""
    try:
        answer = await submit(partial(_place, **asked), account_id=account_id, user_id=user_id)
    except EngineUnavailable:
        raise OrderRejected(*UNAVAILABLE) from None
    return order_result(answer, trader_id=account_id)


def _cancel_answer(order: Order, answer: dict[str, Any]) -> Order:
    if "order" not in answer:
        raise rejection_of(answer)
    closed = order_of(answer["order"], trader_id=order.trader_id)
    if closed.status == Order.Status.FILLED:
        raise OrderRejected("already_filled", "order_id", "the order was filled and cannot be cancelled", 409)
    return closed


async def order_cancel_async(*, order: Order, user_id: Any) -> Order:
    """Cancel the open `order` (read by the caller): `order_cancel` for the web, awaited on the event loop."""
    try:
        answer = await submit(partial(Cancel, order_id=order.pk), account_id=order.trader_id, user_id=user_id)
    except EngineUnavailable:
        raise OrderRejected(
            "engine_unavailable", "order_id", "the order cannot be changed right now; retry", 503
        ) from None
    return _cancel_answer(order, answer)


async def _submitted(command_for: Any, *, account_id: ObjectId, user_id: Any, field: str) -> dict[str, Any]:
    try:
        return await submit(command_for, account_id=account_id, user_id=user_id)
    except EngineUnavailable:
        raise OrderRejected("engine_unavailable", field, "orders cannot be changed right now; retry", 503) from None


async def cancel_all_async(*, account_id: ObjectId, user_id: Any, symbol: str | None = None) -> list[Order]:
    """Cancel every open order of the account (of `symbol` only, when given) in one engine command."""
    symbol = None if symbol is None else symbol.strip().upper()
    answer = await _submitted(partial(CancelAll, symbol=symbol), account_id=account_id, user_id=user_id, field="symbol")
    if "orders" not in answer:
        raise rejection_of(answer)
    return [order_of(fields, trader_id=account_id) for fields in answer["orders"]]


def close_asked(
    *, symbol: str, quantity: int | None, percent: int | None, cancel_orders: bool, client_order_id: str | None
) -> dict[str, Any]:
    """A position's close checked (OrderRejected naming the field): all of it, `quantity` shares or `percent`."""
    if quantity is not None and percent is not None:
        raise OrderRejected("invalid_percent", "percent", "give quantity or percent, not both")
    if quantity is not None and not 1 <= quantity <= QUANTITY_MAX:
        raise OrderRejected("invalid_quantity", "quantity", f"quantity must be a whole number from 1 to {QUANTITY_MAX}")
    if percent is not None and not 1 <= percent <= 100:
        raise OrderRejected("invalid_percent", "percent", "percent must be a whole number from 1 to 100")
    client_order_id = uuid.uuid4().hex if client_order_id is None else client_order_id
    order_validated(side="sell", quantity=quantity or 1, client_order_id=client_order_id)
    symbol = _symbol_checked(symbol.strip().upper())
    return {"symbol": symbol, "quantity": quantity, "percent": percent, "cancel_orders": cancel_orders} | {
        "client_order_id": client_order_id
    }


async def close_position_async(*, account_id: ObjectId, user_id: Any, asked: dict[str, Any]) -> OrderResult:
    """Sell the position at market as the engine holds it (`asked`: from `close_asked`), exactly once per
    client_order_id; with cancel_orders the symbol's open orders are cancelled in the same commit."""
    answer = await _submitted(partial(Close, **asked), account_id=account_id, user_id=user_id, field="symbol")
    return order_result(answer, trader_id=account_id)


def order_cancel(*, trader: Any, order_id: str) -> Order | None:
    """Cancel the trader's resting order; a cancelled or expired one is returned as it is (idempotent).

    None: no such order of this trader. OrderRejected 409: it was filled."""
    order = order_get(trader=trader, order_id=order_id)
    if order is None:
        return None
    if order.status == Order.Status.OPEN:
        try:
            answer = submit_blocking(partial(Cancel, order_id=order.pk), account_id=trader.pk, user_id=trader.user_id)
            order = _cancel_answer(order, answer)
        except EngineUnavailable:
            raise OrderRejected(
                "engine_unavailable", "order_id", "the order cannot be changed right now; retry", 503
            ) from None
    if order.status == Order.Status.FILLED:
        raise OrderRejected("already_filled", "order_id", "the order was filled and cannot be cancelled", 409)
    return order


def account_adjust(
    *,
    trader: Trader,
    cash: Decimal = Decimal("0"),
    positions: dict[str, tuple[int, Decimal]] | None = None,
    note: str = "",
) -> Decimal:
    """An operator's change: `cash` added (negative: taken), positions set to (quantity, average cost); the
    cash after it. Refused (OrderRejected) when it would take cash or shares below what orders reserve."""
    if not cash.is_finite() or cash != cash.quantize(CENT):
        raise OrderRejected("invalid_cash", "cash", "cash must be an amount in cents")
    changes = tuple(
        PositionChange(symbol=symbol.strip().upper(), quantity=quantity, average_cost=str(cost))
        for symbol, (quantity, cost) in (positions or {}).items()
    )
    command = partial(Adjust, cash_cents=int(cash * 100), positions=changes, note=note)
    try:
        answer = submit_blocking(command, account_id=trader.pk, user_id=trader.user_id)
    except EngineUnavailable:
        raise OrderRejected(
            "engine_unavailable", "account", "the account cannot be changed right now; retry", 503
        ) from None
    if int(answer["s"]) != 200:
        raise rejection_of(answer)
    return Decimal(str(answer["cash"]))


# --- Invoices ---------------------------------------------------------------------------------------------


def invoice_pdf(invoice: Invoice) -> bytes:
    """The confirmation's PDF: rendered on first download and kept (a concurrent first download keeps one)."""
    if invoice.status == Invoice.Status.READY and invoice.pdf:
        return bytes(invoice.pdf)
    pdf = render_invoice_pdf(invoice)
    if journal.invoice_pdf_store(order_id=invoice.order_id, pdf=pdf, at_ms=epoch_ms(timezone.now())):
        INVOICES_RENDERED.inc()
        return pdf
    stored = Invoice.objects.filter(pk=invoice.pk).values_list("pdf", flat=True).first()
    return bytes(stored) if stored else pdf  # a concurrent first download stored its own: every download is that one
