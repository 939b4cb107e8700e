"""Writes for traders: accounts, orders (atomic, exactly once) and invoices.

Order execution lives beside this module: the transaction (transactions.py), one fill's writes
(execution.py), resting orders, cancels and expiry (orders.py, reservations.py), the matcher (matching.py).
"""

import logging
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import redis
from bson import ObjectId
from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError
from django.utils import timezone
from django_mongodb_backend import transaction
from pymongo.errors import PyMongoError

from apps.core.jobs import job_is_live, outbox_claim, send_or_leave_to_outbox
from apps.core.locks import LockTimeout, one_at_a_time
from apps.core.metrics import ORDER_CONFLICTS, ORDER_QUEUE_WAIT, OUTBOX_RESENT
from apps.core.tokens import token_create
from apps.market.selectors import latest_prices, symbol_by_ticker
from apps.portfolio import refusals
from apps.portfolio.events import publish_invoice_ready
from apps.portfolio.execution import (
    AVERAGE_COST_STEP,
    CENT,
    CLIENT_ORDER_ID_MAX,
    INVOICE_TASK,
    QUANTITY_MAX,
    OrderRejected,
    OrderResult,
    Ticket,
    new_order,
    ticket_for,
)
from apps.portfolio.execution import execute as _execute
from apps.portfolio.models import Invoice, Order, OrderType, Side, Trader
from apps.portfolio.orders import OrderTerms, fills_now, order_rest, terms_validated
from apps.portfolio.selectors import order_by_client_order_id
from apps.portfolio.transactions import TRANSACTION_BUDGET_SECONDS, connection, is_transient, trading_transaction
from apps.portfolio.transactions import backoff as _backoff

__all__ = [
    "AVERAGE_COST_STEP",
    "CENT",
    "CLIENT_ORDER_ID_MAX",
    "INVOICE_TASK",
    "QUANTITY_MAX",
    "OrderRejected",
    "OrderResult",
    "OrderTerms",
    "place_order",
    "trader_create",
]

logger = logging.getLogger(__name__)


class TraderError(ValueError):
    """A request to create or change a trader that cannot be honoured."""


def trader_create(
    *, username: str, cash: Decimal, staff: bool = False, superuser: bool = False, password: str | None = None
) -> tuple[Trader, str]:
    """Create a user, its trader profile and an API token; returns the token once.

    `staff` opens the admin and ops pages with the permissions an operator grants;
    only `superuser` holds every permission.
    """
    username = username.strip()
    if not username:
        raise TraderError("username: must not be empty")
    if not cash.is_finite() or cash < 0:
        raise TraderError(f"cash: must be a non-negative amount, got {cash}")
    cash = cash.quantize(Decimal("0.01"))
    if User.objects.filter(username=username).exists():
        raise TraderError(f"username: {username!r} already exists")
    with transaction.atomic():
        user = User.objects.create_user(
            username=username, password=password, is_staff=staff or superuser, is_superuser=superuser
        )
        trader = Trader.objects.create(user=user, cash=cash, starting_cash=cash)
        token = token_create(user=user)
    return trader, token


# --- Orders ----------------------------------------------------------------------------
# How long an order waits for its trader's earlier orders: 50 at once are served within the deadline.
ORDER_QUEUE_WAIT_SECONDS = 2.5


def _validated(*, side: str, quantity: int, client_order_id: str) -> None:
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


def _replayed(order: Order, *, asked: dict[str, object]) -> OrderResult:
    """The original order for a repeated client_order_id, or a 409 when the body differs."""
    differing = [name for name, value in asked.items() if name != "client_order_id" and getattr(order, name) != value]
    if differing:
        raise OrderRejected(
            "client_order_id_conflict",
            "client_order_id",
            f"client_order_id {order.client_order_id!r} was already used for a different order "
            f"(differs in {', '.join(differing)})",
            status=409,
        )
    return OrderResult(order=order, created=False)


def _execution_price(symbol: str) -> Decimal:
    listing = symbol_by_ticker(symbol)
    if listing is None:
        raise OrderRejected("unknown_symbol", "symbol", f"unknown symbol {symbol!r}")
    if not listing.active:
        raise OrderRejected("symbol_halted", "symbol", f"{symbol} is halted and cannot be traded", status=409)
    try:
        price = latest_prices([symbol]).get(symbol)
    except redis.RedisError as error:
        logger.warning("no quote for %s, Redis failed: %s", symbol, error)
        raise OrderRejected("quotes_unavailable", "symbol", "prices are unavailable; try again", status=503) from None
    if price is None:
        raise OrderRejected("no_quote", "symbol", f"{symbol} has no price yet; try again shortly", status=409)
    return price


def _replay_or_retry(trader: Trader, *, asked: dict[str, object]) -> OrderResult | None:
    """After a duplicate client_order_id: the original order's answer (None: it vanished, try again)."""
    original = order_by_client_order_id(trader=trader, client_order_id=str(asked["client_order_id"]))
    return None if original is None else _replayed(original, asked=asked)


def place_order(
    *,
    trader: Trader,
    symbol: str,
    side: str,
    quantity: int,
    client_order_id: str | None = None,
    terms: OrderTerms | None = None,
) -> OrderResult:
    """Place an order, exactly once per (trader, client_order_id).

    A market order, or one whose price is marketable now, executes at the latest price; any other
    rests (apps/portfolio/orders.py) with its cash or shares reserved until a tick crosses it.
    One trader's orders run one after another (a per-trader lock, `apps.core.locks`), so
    concurrent orders of one account queue instead of conflicting; the outcome is that of
    some serial order of them. Raises OrderRejected for anything that cannot be placed;
    nothing is written then.
    """
    replayable = client_order_id is not None  # the client's own id: it may repeat an earlier order
    client_order_id = uuid.uuid4().hex if client_order_id is None else client_order_id
    symbol = symbol.strip().upper()
    _validated(side=side, quantity=quantity, client_order_id=client_order_id)
    terms = terms_validated(terms or OrderTerms())
    asked = {"client_order_id": client_order_id, "symbol": symbol, "side": side, "quantity": quantity}
    asked |= terms.fields()
    started = time.monotonic()
    try:
        with one_at_a_time(f"trader:{trader.pk}", wait_seconds=ORDER_QUEUE_WAIT_SECONDS) as locked:
            ORDER_QUEUE_WAIT.observe(time.monotonic() - started)
            if terms.type == OrderType.MARKET:
                return _run_market(trader, asked, arrived=started, locked=locked, replayable=replayable)
            price = _execution_price(symbol)
            deadline = started + TRANSACTION_BUDGET_SECONDS
            order = new_order(trader=trader, **asked)  # type: ignore[arg-type]
            if fills_now(order, price):
                order.status, order.closed_at = Order.Status.FILLED, order.created_at
                return _run(trader, ticket_for(order, price=price), asked, deadline=deadline)
            return _rest(trader, order, price, asked, deadline=deadline)
    except LockTimeout:
        raise OrderRejected("busy", "client_order_id", "too many concurrent orders; retry", 503) from None


def _run_market(
    trader: Trader, asked: dict[str, object], *, arrived: float, locked: bool, replayable: bool
) -> OrderResult:
    """A market order: refused with an earlier one of its burst that asked no more (refusals.py), or run.
    A shared refusal first checks that the client's id does not repeat an earlier order (one read)."""
    key = (str(trader.pk), str(asked["symbol"]), str(asked["side"]))
    quantity = int(asked["quantity"])  # type: ignore[call-overload]
    if (rejection := refusals.shared(key, quantity, arrived=arrived)) is not None:
        if replayable and (replay := _replay_or_retry(trader, asked=asked)) is not None:
            return replay
        raise rejection
    price = _execution_price(key[1])
    order = new_order(trader=trader, **asked)  # type: ignore[arg-type]
    order.status, order.closed_at = Order.Status.FILLED, order.created_at
    try:
        return _run(trader, ticket_for(order, price=price), asked, deadline=arrived + TRANSACTION_BUDGET_SECONDS)
    except OrderRejected as refused:
        refusals.note(key, quantity, refused, locked=locked)
        raise


def _run(trader: Trader, ticket: Ticket, asked: dict[str, object], *, deadline: float) -> OrderResult:
    """The transaction, retried on a transient conflict (rare once orders queue: another process' write)."""
    attempt = 0
    while True:
        try:
            with trading_transaction():
                return OrderResult(order=_execute(ticket), created=True)
        except IntegrityError:
            # The client_order_id is taken (an earlier or concurrent request): answer with that order.
            if (replay := _replay_or_retry(trader, asked=asked)) is not None:
                return replay
        except (DatabaseError, PyMongoError) as error:
            if not is_transient(error):
                raise
            ORDER_CONFLICTS.inc()
            if time.monotonic() > deadline:
                raise OrderRejected("busy", "client_order_id", "too many concurrent orders; retry", 503) from None
            _backoff(attempt)
            attempt += 1


def _rest(trader: Trader, order: Order, price: Decimal, asked: dict[str, object], *, deadline: float) -> OrderResult:
    """A resting order with its reservation; a repeated client_order_id answers with the original."""
    while True:
        try:
            return OrderResult(order=order_rest(order, price=price, deadline=deadline), created=True)
        except IntegrityError:
            if (replay := _replay_or_retry(trader, asked=asked)) is not None:
                return replay


# --- Invoices ---------------------------------------------------------------------------


def invoice_job_key(order_id: ObjectId | str) -> str:
    """The lease a running invoice job holds (apps/core/jobs.py `job_lease`)."""
    return f"invoice:{order_id}"


def invoices_resend_stalled(*, older_than: timedelta, now: datetime | None = None, limit: int = 500) -> int:
    """The invoice outbox: send the job of each invoice pending longer than `older_than` again, once per
    period, unless a live job holds it. Covers a broker that refused the job at commit and a worker killed
    while rendering. A duplicate delivery changes nothing (`invoice_mark_ready` marks ready once)."""
    now = now or timezone.now()
    cutoff = now - older_than
    invoices = connection.get_collection(Invoice._meta.db_table)
    stalled = invoices.find(
        {"status": Invoice.Status.PENDING, "created_at": {"$lt": cutoff}},
        projection={"order_id": 1, "resent_at": 1},
        limit=limit,
    )
    resent = 0
    for invoice in stalled:
        last_sent = invoice.get("resent_at")
        if last_sent is not None and last_sent.replace(tzinfo=cutoff.tzinfo) >= cutoff:
            continue  # sent again recently: give that job its period
        if job_is_live(invoice_job_key(invoice["order_id"])):
            continue  # being rendered right now
        claimed = outbox_claim(invoices, invoice["_id"], sent_field="resent_at", last_sent=last_sent, now=now)
        if claimed and send_or_leave_to_outbox(INVOICE_TASK, [str(invoice["order_id"])], {}):
            OUTBOX_RESENT.labels(task=INVOICE_TASK).inc()
            resent += 1
    if resent:
        logger.warning("invoice outbox: sent %d stalled invoice jobs again", resent)
    return resent


def invoice_mark_ready(*, invoice: Invoice, pdf: bytes) -> bool:
    """Store the PDF and mark the invoice ready, once: False when it already was (a redelivered job)."""
    unfinished = [Invoice.Status.PENDING, Invoice.Status.FAILED]  # failed: a replayed dead letter
    # Flat filters on (order_id, status): the ORM's $and form is never indexed on SecantusDB.
    result = connection.get_collection(Invoice._meta.db_table).update_one(
        {"order_id": invoice.order_id, "status": {"$in": unfinished}},
        {"$set": {"status": Invoice.Status.READY, "pdf": pdf, "ready_at": timezone.now()}},
    )
    if result.modified_count == 1:
        invoice_announce_ready(invoice=invoice)
    return result.modified_count == 1


def invoice_announce_ready(*, invoice: Invoice) -> None:
    """Tell the trader the PDF is ready; a redelivered job calls it again (its first delivery may have died
    between storing the PDF and announcing it), and the announcement is sent once (`publish_invoice_ready`)."""
    publish_invoice_ready(invoice)


def invoice_mark_failed(*, order_id: ObjectId) -> None:
    """The job gave up (it is in the dead-letter store): say so instead of pending forever."""
    connection.get_collection(Invoice._meta.db_table).update_one(
        {"order_id": order_id, "status": Invoice.Status.PENDING}, {"$set": {"status": Invoice.Status.FAILED}}
    )
