"""Reservations: a resting buy holds its cash (limit price x quantity), a resting sell its shares.

Buying power is cash - reserved_cash and never goes below zero: every reservation and every debit
is a conditional write on what is free (cash - reserved_cash, quantity - reserved), inside the
order's transaction.
"""

from decimal import Decimal
from typing import Any

from bson import Decimal128
from pymongo import ReturnDocument

from apps.portfolio.execution import CENT, OrderRejected
from apps.portfolio.guarded_writes import available, update_while_free
from apps.portfolio.models import Holding, Order, OrderType, Side, Trader
from apps.portfolio.transactions import connection

ACCOUNT_FIELDS = {"cash": 1, "reserved_cash": 1}


def reservation_price(order: Order) -> Decimal:
    """The price a resting buy reserves at: its limit, or for a stop market order its stop price."""
    price = order.stop_price if order.type == OrderType.STOP else order.limit_price
    assert price is not None  # terms_validated: every resting type has it
    return price


def reservation_amount(order: Order) -> Decimal:
    """The cash a resting buy holds (none for a sell: it holds its shares)."""
    if order.side == Side.SELL:
        return Decimal("0.00")
    return (reservation_price(order) * order.quantity).quantize(CENT)


def reserve(order: Order) -> dict[str, Any]:
    """Hold the cash (buy) or shares (sell) `order` needs, or refuse it (409); the account after it."""
    session = connection.session
    traders = connection.get_collection(Trader._meta.db_table)
    if order.side == Side.SELL:
        update_while_free(
            connection.get_collection(Holding._meta.db_table),
            {"trader_id": order.trader_id, "symbol": order.symbol, **available("quantity", order.quantity)},
            {"$inc": {"reserved": order.quantity}},
            free=("quantity", "reserved"),
            projection={"quantity": 1, "reserved": 1},
            session=session,
            refusal=lambda: OrderRejected(
                "insufficient_holding", "quantity", f"you do not hold {order.quantity} {order.symbol} unreserved", 409
            ),
        )
        return dict(traders.find_one({"_id": order.trader_id}, ACCOUNT_FIELDS, session=session) or {})
    return update_while_free(
        traders,
        {"_id": order.trader_id, **available("cash", order.reserved_cash)},
        {"$inc": {"reserved_cash": Decimal128(order.reserved_cash)}},
        free=("cash", "reserved_cash"),
        projection=ACCOUNT_FIELDS,
        session=session,
        refusal=lambda: OrderRejected(
            "insufficient_buying_power",
            "quantity",
            f"{order.quantity} {order.symbol} at {reservation_price(order)} needs {order.reserved_cash} buying power",
            409,
        ),
    )


def release(order: Order) -> dict[str, Any]:
    """Give back what the resting `order` held (it was just closed unfilled); the account after it."""
    session = connection.session
    if order.side == Side.SELL:
        connection.get_collection(Holding._meta.db_table).update_one(
            {"trader_id": order.trader_id, "symbol": order.symbol},
            {"$inc": {"reserved": -order.quantity}},
            session=session,
        )
    traders = connection.get_collection(Trader._meta.db_table)
    if not order.reserved_cash:
        return dict(traders.find_one({"_id": order.trader_id}, ACCOUNT_FIELDS, session=session) or {})
    account = traders.find_one_and_update(
        {"_id": order.trader_id},
        {"$inc": {"reserved_cash": Decimal128(-order.reserved_cash)}},
        projection=ACCOUNT_FIELDS,
        return_document=ReturnDocument.AFTER,
        session=session,
    )
    return dict(account or {})
