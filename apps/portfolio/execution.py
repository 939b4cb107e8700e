"""One fill's writes: the trade, cash, holding, reservations released and a pending invoice, in one transaction.

Market orders insert their order and fill at once (`execute`); a resting order that a tick crosses was
inserted earlier and fills through the same writes (`write_fill`, apps/portfolio/orders.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId
from django.utils import timezone
from django_mongodb_backend import transaction
from pymongo.client_session import ClientSession
from pymongo.collection import Collection

from apps.core.cache import invalidate_after_commit
from apps.core.clock import to_milliseconds
from apps.core.jobs import enqueue_on_commit
from apps.portfolio.events import order_fields, publish_account_events
from apps.portfolio.guarded_writes import available, update_while_free
from apps.portfolio.invoices import invoice_code
from apps.portfolio.models import Holding, Invoice, Order, Side, Trader
from apps.portfolio.selectors import account_key, recent_orders_key
from apps.portfolio.transactions import connection

QUANTITY_MAX = 1_000_000
CLIENT_ORDER_ID_MAX = 48
CENT = Decimal("0.01")
AVERAGE_COST_STEP = Decimal("0.0001")
INVOICE_TASK = "apps.portfolio.tasks.generate_invoice"
ZERO = Decimal128("0")


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
class Ticket:
    """Everything a fill writes, built before its transaction starts (the transaction only sends it).

    `released_cash` / `released_shares`: what a resting order reserved, given back by this fill."""

    order: Order
    trader_id: ObjectId
    symbol: str
    side: str
    quantity: int
    price: Decimal
    amount: Decimal
    released_cash: Decimal = Decimal("0.00")
    released_shares: int = 0


def ticket_for(order: Order, *, price: Decimal) -> Ticket:
    """The fill of `order` at `price`; a resting order's reservation is released by it."""
    amount = (price * order.quantity).quantize(CENT)
    order.price, order.amount = price, amount
    resting = order.status == Order.Status.OPEN
    return Ticket(
        order=order,
        trader_id=order.trader_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        price=price,
        amount=amount,
        released_cash=order.reserved_cash if resting and order.side == Side.BUY else Decimal("0.00"),
        released_shares=order.quantity if resting and order.side == Side.SELL else 0,
    )


def new_order(*, trader: Trader, client_order_id: str, symbol: str, side: str, quantity: int, **terms: Any) -> Order:
    return Order(
        id=ObjectId(),
        trader=trader,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        quantity=quantity,
        created_at=to_milliseconds(timezone.now()),
        **terms,
    )


def _buy_holding_upsert(ticket: Ticket, now: Any) -> list[dict[str, Any]]:
    """One pipeline upsert: add the shares and fold the price into the average cost (a new holding starts at it)."""
    owned = {"$ifNull": ["$quantity", 0]}
    cost = {"$add": [{"$multiply": [{"$ifNull": ["$average_cost", ZERO]}, owned]}, Decimal128(ticket.amount)]}
    return [
        {
            "$set": {
                "average_cost": {"$round": [{"$divide": [cost, {"$add": [owned, ticket.quantity]}]}, 4]},
                "quantity": {"$add": [owned, ticket.quantity]},
                "reserved": {"$ifNull": ["$reserved", 0]},
                "updated_at": now,
            }
        }
    ]


def move_cash(traders: Collection, ticket: Ticket, session: ClientSession | None) -> dict[str, Any]:
    """Debit (buy, never below what other orders reserve) or credit (sell) the cash and release this order's
    reservation; the account after it (invoice_sequence: the trader's next invoice number, cash, reserved_cash)."""
    signed = -ticket.amount if ticket.side == Side.BUY else ticket.amount
    guard = available("cash", ticket.amount, released=ticket.released_cash) if ticket.side == Side.BUY else {}
    change: dict[str, Any] = {"cash": Decimal128(signed), "invoice_sequence": 1}
    if ticket.released_cash:
        change["reserved_cash"] = Decimal128(-ticket.released_cash)
    return update_while_free(
        traders,
        {"_id": ticket.trader_id, **guard},
        {"$inc": change},
        free=("cash", "reserved_cash"),
        projection={"invoice_sequence": 1, "cash": 1, "reserved_cash": 1},
        session=session,
        refusal=lambda: OrderRejected(
            "insufficient_cash", "quantity", f"not enough buying power for {ticket.quantity} {ticket.symbol}", 409
        ),
    )


def move_shares(holdings: Collection, ticket: Ticket, session: ClientSession | None) -> None:
    """Add (buy) or remove (sell, never short, never shares other orders reserve) the shares; a sale to zero
    deletes the holding."""
    match = {"trader_id": ticket.trader_id, "symbol": ticket.symbol}
    now = ticket.order.closed_at or ticket.order.created_at
    if ticket.side == Side.BUY:
        holdings.update_one(match, _buy_holding_upsert(ticket, now), upsert=True, session=session)
        return
    # The average cost of what is left is unchanged.
    held = update_while_free(
        holdings,
        {**match, **available("quantity", ticket.quantity, released=ticket.released_shares)},
        {"$inc": {"quantity": -ticket.quantity, "reserved": -ticket.released_shares}, "$set": {"updated_at": now}},
        free=("quantity", "reserved"),
        projection={"quantity": 1, "reserved": 1},
        session=session,
        refusal=lambda: OrderRejected(
            "insufficient_holding", "quantity", f"you do not hold {ticket.quantity} {ticket.symbol} unreserved", 409
        ),
    )
    if held["quantity"] == 0:
        holdings.delete_one({"_id": held["_id"]}, session=session)  # by _id alone: an indexed delete


def announce_after_commit(events: Sequence[str], order: Order, account: dict[str, Any]) -> None:
    """Tell the trader (their private event channel) once the transaction commits: the order and new cash.

    `account`: the trader's document after the write (cash, reserved_cash). Each event is the order's
    fields with the new cash and buying power beside them (the feed's `AccountEvent`); an order filled at
    once is announced "accepted", then "filled". All in one Redis round trip; the user id is loaded already
    (the cache invalidation needs it), so no lookup."""
    cash = _money(account.get("cash"))
    reserved = _money(account.get("reserved_cash"))
    payload = {
        **order_fields(order),
        "cash": str(cash),
        "reserved_cash": str(reserved),
        "buying_power": str(cash - reserved),
    }
    filled_at_once = order.status == Order.Status.FILLED
    announced = [
        (event, {**payload, "status": "accepted"} if event == "order_accepted" and filled_at_once else payload)
        for event in events
    ]
    user_id = order.trader.user_id
    transaction.on_commit(lambda: publish_account_events(order.trader_id, announced, user_id=user_id))


def _money(value: object) -> Decimal:
    if isinstance(value, Decimal128):
        return value.to_decimal().quantize(CENT)
    return Decimal(str(value or "0")).quantize(CENT)


def write_fill(ticket: Ticket, *, new: bool = False) -> dict[str, Any]:
    """Cash, holding and pending invoice of a fill whose order is written already; the account after it.

    The invoice job is sent, the trader's cached account and orders dropped and the trader told
    (accepted first when the order is `new`, then filled) on commit."""
    session = connection.session
    account = move_cash(connection.get_collection(Trader._meta.db_table), ticket, session)
    move_shares(connection.get_collection(Holding._meta.db_table), ticket, session)
    number = int(account["invoice_sequence"])
    code = invoice_code(order=ticket.order, number=number)  # needs the number: microseconds of CPU, no round trip
    Invoice.objects.create(order=ticket.order, trader_id=ticket.trader_id, number=number, verification_code=code)
    enqueue_on_commit(INVOICE_TASK, str(ticket.order.pk))
    user_id = ticket.order.trader.user_id
    invalidate_after_commit("profiles", [account_key(user_id), recent_orders_key(user_id)])
    announce_after_commit(["order_accepted", "order_filled"] if new else ["order_filled"], ticket.order, account)
    return account


def execute(ticket: Ticket) -> Order:
    """Trade, cash, holding and pending invoice in one transaction: 4 writes and the commit.

    The trade goes first, so a repeated client_order_id fails on its unique index before
    anything else is touched.
    """
    ticket.order.save(force_insert=True)
    write_fill(ticket, new=True)
    return ticket.order
