"""Writes for traders: accounts, orders (atomic, exactly once) and invoices."""

import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import redis
from bson import Decimal128, ObjectId
from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError
from django.db import connection as default_connection
from django.utils import timezone
from django_mongodb_backend import transaction
from django_mongodb_backend.base import DatabaseWrapper
from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from apps.core.backoff import backoff_delay
from apps.core.cache import invalidate_after_commit
from apps.core.clock import to_milliseconds
from apps.core.jobs import enqueue_on_commit, job_is_live, outbox_claim, send_or_leave_to_outbox
from apps.core.locks import LockTimeout, one_at_a_time
from apps.core.metrics import ORDER_CONFLICTS, ORDER_QUEUE_WAIT, OUTBOX_RESENT
from apps.core.tokens import token_create
from apps.market.selectors import latest_prices, symbol_by_ticker
from apps.portfolio.events import publish_invoice_ready, publish_market_order
from apps.portfolio.invoices import invoice_code
from apps.portfolio.models import Holding, Invoice, Order, Side, Trader
from apps.portfolio.selectors import account_key, order_by_client_order_id, recent_orders_key

logger = logging.getLogger(__name__)
# The backend's own wrapper: sessions and raw collections for the order transaction.
connection = cast(DatabaseWrapper, default_connection)


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
QUANTITY_MAX = 1_000_000
CLIENT_ORDER_ID_MAX = 48
CENT = Decimal("0.01")
AVERAGE_COST_STEP = Decimal("0.0001")
WRITE_CONFLICT = 112
# An order waits for its trader's earlier orders, and retries a rare conflict, this long before it is
# refused as busy: inside the request's MongoDB deadline (MONGODB_REQUEST_TIMEOUT_MS, 3 s), so the
# answer is ours, not a timeout. 50 queued orders of one trader take well under it (docs/performance.md).
TRANSACTION_BUDGET_SECONDS = 2.0
# How long an order waits for its trader's earlier orders: 50 at once are served within the deadline.
ORDER_QUEUE_WAIT_SECONDS = 2.5
BACKOFF_FIRST_SECONDS = 0.002
BACKOFF_MAX_SECONDS = 0.1


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


def _replayed(order: Order, *, symbol: str, side: str, quantity: int) -> OrderResult:
    """The original order for a repeated client_order_id, or a 409 when the body differs."""
    asked = {"symbol": symbol, "side": side, "quantity": quantity}
    differing = [name for name, value in asked.items() if getattr(order, name) != value]
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


@contextmanager
def _trading_transaction() -> Iterator[None]:
    """One MongoDB transaction with read concern snapshot and write concern majority.

    The backend's atomic() starts its session with the server defaults; we start
    the session ourselves with explicit concerns and let atomic() adopt it (it
    only opens a session when none exists), so commit, rollback and on_commit
    hooks stay the backend's. Nested inside another atomic(), we join that one.
    """
    if connection.in_atomic_block_mongo:
        with transaction.atomic():
            yield
        return
    connection.ensure_connection()
    session = connection.connection.start_session()
    session.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority"))
    connection.session = session
    try:
        with transaction.atomic():
            yield
    finally:
        # A driver error raised by the commit itself escapes atomic() without its cleanup.
        if connection.session is not None and not connection.in_atomic_block_mongo:
            session, connection.session = connection.session, None
            connection.run_on_commit = []
            if session.in_transaction:
                # In a fresh context: outside the request's MongoDB deadline (pymongo.timeout), which may
                # be what failed. An abandoned transaction would hold its writes until the server's limit.
                contextvars.Context().run(_abort_quietly, session)
            session.end_session()


def _abort_quietly(session: ClientSession) -> None:
    with contextlib.suppress(PyMongoError):
        session.abort_transaction()


def _is_transient(error: BaseException) -> bool:
    """A transaction conflict worth retrying (the driver's error may be wrapped in Django's)."""
    for candidate in (error, error.__cause__):
        if isinstance(candidate, PyMongoError) and candidate.timeout:
            return False  # the request's deadline is spent: retrying cannot help (the caller answers 503)
        if isinstance(candidate, PyMongoError) and (
            candidate.has_error_label("TransientTransactionError")
            or candidate.has_error_label("UnknownTransactionCommitResult")
            or getattr(candidate, "code", None) == WRITE_CONFLICT
        ):
            return True
    return False


def _backoff(attempt: int) -> None:
    """Sleep between 0.5 and 1.5 times min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**attempt).

    The one backoff's jitter takes up to a fraction off its ceiling: a ceiling 1.5 times as high with
    2/3 taken off at most spans the same range."""
    time.sleep(
        backoff_delay(attempt, base=BACKOFF_FIRST_SECONDS * 1.5, maximum=BACKOFF_MAX_SECONDS * 1.5, jitter=2 / 3)
    )


@dataclass(frozen=True)
class _Ticket:
    """Everything an order writes, built before its transaction starts (the transaction only sends it)."""

    order: Order
    trader_id: ObjectId
    symbol: str
    side: str
    quantity: int
    price: Decimal
    amount: Decimal


def _ticket(*, trader: Trader, symbol: str, side: str, quantity: int, client_order_id: str, price: Decimal) -> _Ticket:
    amount = (price * quantity).quantize(CENT)
    order = Order(
        id=ObjectId(),
        trader=trader,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        quantity=quantity,
        price=price,
        amount=amount,
        created_at=to_milliseconds(timezone.now()),
    )
    return _Ticket(order, trader.pk, symbol, side, quantity, price, amount)


def _buy_holding_upsert(ticket: _Ticket) -> list[dict[str, Any]]:
    """One pipeline upsert: add the shares and fold the price into the average cost (a new holding starts at it)."""
    owned = {"$ifNull": ["$quantity", 0]}
    cost = {
        "$add": [{"$multiply": [{"$ifNull": ["$average_cost", Decimal128("0")]}, owned]}, Decimal128(ticket.amount)]
    }
    return [
        {
            "$set": {
                "average_cost": {"$round": [{"$divide": [cost, {"$add": [owned, ticket.quantity]}]}, 4]},
                "quantity": {"$add": [owned, ticket.quantity]},
                "updated_at": ticket.order.created_at,
            }
        }
    ]


def _move_cash(traders: Collection, ticket: _Ticket, session: ClientSession | None) -> int:
    """Debit (buy, never below zero) or credit (sell) the cash; the trader's next invoice number."""
    signed = -ticket.amount if ticket.side == Side.BUY else ticket.amount
    guard: dict[str, Any] = {"cash": {"$gte": Decimal128(ticket.amount)}} if ticket.side == Side.BUY else {}
    account = traders.find_one_and_update(
        {"_id": ticket.trader_id, **guard},
        {"$inc": {"cash": Decimal128(signed), "invoice_sequence": 1}},
        projection={"invoice_sequence": 1},
        return_document=ReturnDocument.AFTER,
        session=session,
    )
    if account is None:
        raise OrderRejected(
            "insufficient_cash", "quantity", f"not enough cash for {ticket.quantity} {ticket.symbol}", 409
        )
    return int(account["invoice_sequence"])


def _move_shares(holdings: Collection, ticket: _Ticket, session: ClientSession | None) -> None:
    """Add (buy) or remove (sell, never short) the shares; a sale to zero deletes the holding."""
    match = {"trader_id": ticket.trader_id, "symbol": ticket.symbol}
    if ticket.side == Side.BUY:
        holdings.update_one(match, _buy_holding_upsert(ticket), upsert=True, session=session)
        return
    # The average cost of what is left is unchanged.
    held = holdings.find_one_and_update(
        {**match, "quantity": {"$gte": ticket.quantity}},
        {"$inc": {"quantity": -ticket.quantity}, "$set": {"updated_at": ticket.order.created_at}},
        projection={"quantity": 1},
        return_document=ReturnDocument.AFTER,
        session=session,
    )
    if held is None:
        raise OrderRejected(
            "insufficient_holding", "quantity", f"you do not hold {ticket.quantity} {ticket.symbol}", 409
        )
    if held["quantity"] == 0:
        holdings.delete_one({"_id": held["_id"]}, session=session)  # by _id alone: an indexed delete


def _execute(ticket: _Ticket) -> Order:
    """Trade, cash, holding and pending invoice in one transaction: 4 writes and the commit.

    The trade goes first, so a repeated client_order_id fails on its unique index before
    anything else is touched. The invoice job is sent on commit.
    """
    session = connection.session
    ticket.order.save(force_insert=True)
    number = _move_cash(connection.get_collection(Trader._meta.db_table), ticket, session)
    _move_shares(connection.get_collection(Holding._meta.db_table), ticket, session)
    code = invoice_code(order=ticket.order, number=number)  # needs the number: microseconds of CPU, no round trip
    Invoice.objects.create(order=ticket.order, trader_id=ticket.trader_id, number=number, verification_code=code)
    enqueue_on_commit(INVOICE_TASK, str(ticket.order.pk))
    user_id = ticket.order.trader.user_id
    invalidate_after_commit("profiles", [account_key(user_id), recent_orders_key(user_id)])
    publish_market_order(ticket.order)  # on commit, once the cached account is dropped: a reader then sees it
    return ticket.order


def _replay_or_retry(
    trader: Trader, *, client_order_id: str, symbol: str, side: str, quantity: int
) -> OrderResult | None:
    """After a duplicate client_order_id: the original order's answer (None: it vanished, try again)."""
    original = order_by_client_order_id(trader=trader, client_order_id=client_order_id)
    return None if original is None else _replayed(original, symbol=symbol, side=side, quantity=quantity)


def place_order(
    *, trader: Trader, symbol: str, side: str, quantity: int, client_order_id: str | None = None
) -> OrderResult:
    """Execute a market order at the latest price, exactly once per (trader, client_order_id).

    One trader's orders run one after another (a per-trader lock, `apps.core.locks`), so
    concurrent orders of one account queue instead of conflicting; the outcome is that of
    some serial order of them. Raises OrderRejected for anything that cannot be executed;
    nothing is written then.
    """
    client_order_id = uuid.uuid4().hex if client_order_id is None else client_order_id
    symbol = symbol.strip().upper()
    _validated(side=side, quantity=quantity, client_order_id=client_order_id)
    asked = {"client_order_id": client_order_id, "symbol": symbol, "side": side, "quantity": quantity}
    started = time.monotonic()
    try:
        with one_at_a_time(f"trader:{trader.pk}", wait_seconds=ORDER_QUEUE_WAIT_SECONDS):
            ORDER_QUEUE_WAIT.observe(time.monotonic() - started)
            ticket = _ticket(trader=trader, price=_execution_price(symbol), **asked)  # type: ignore[arg-type]
            return _run(trader, ticket, asked, deadline=started + TRANSACTION_BUDGET_SECONDS)
    except LockTimeout:
        raise OrderRejected("busy", "client_order_id", "too many concurrent orders; retry", 503) from None


def _run(trader: Trader, ticket: _Ticket, asked: dict[str, Any], *, deadline: float) -> OrderResult:
    """The transaction, retried on a transient conflict (rare once orders queue: another process' write)."""
    attempt = 0
    while True:
        try:
            with _trading_transaction():
                return OrderResult(order=_execute(ticket), created=True)
        except IntegrityError:
            # The client_order_id is taken (an earlier or concurrent request): answer with that order.
            if (replay := _replay_or_retry(trader, **asked)) is not None:
                return replay
        except (DatabaseError, PyMongoError) as error:
            if not _is_transient(error):
                raise
            ORDER_CONFLICTS.inc()
            if time.monotonic() > deadline:
                raise OrderRejected("busy", "client_order_id", "too many concurrent orders; retry", 503) from None
            _backoff(attempt)
            attempt += 1


# --- Invoices ---------------------------------------------------------------------------
INVOICE_TASK = "apps.portfolio.tasks.generate_invoice"


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
        publish_invoice_ready(invoice)
    return result.modified_count == 1


def invoice_mark_failed(*, order_id: ObjectId) -> None:
    """The job gave up (it is in the dead-letter store): say so instead of pending forever."""
    connection.get_collection(Invoice._meta.db_table).update_one(
        {"order_id": order_id, "status": Invoice.Status.PENDING}, {"$set": {"status": Invoice.Status.FAILED}}
    )
