"""A plain serial model of the order engine, and what the tests read back from MongoDB to compare with it.

The model is written from the rules as the brief states them (buying power, reservations, fills at the
market price for a new order and at the limit or tick price for a resting one, stop triggers), not from
apps/portfolio/engine/rules.py: dicts of accounts, positions and orders, one command after another.
Used by tests/portfolio/test_engine_simulation.py (the model) and test_engine_kill.py (the read-back and
the conservation checks).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from bson import Decimal128, ObjectId
from django.db import connection

from apps.core import order_stream
from apps.core.clock import epoch_ms
from apps.portfolio.engine.ids import entry_position, order_id_at
from apps.portfolio.models import EngineShard, Holding, Invoice, Order, Trader

FOUR_PLACES = Decimal("0.0001")
# The four price-ordered lists of resting orders, in the order a tick reaches them.
BUY_LIMIT, SELL_LIMIT, BUY_STOP, SELL_STOP = range(4)


def collection(model: Any) -> Any:
    connection.ensure_connection()
    return connection.get_collection(model._meta.db_table)


def cents(value: Any) -> int | None:
    if value is None:
        return None
    number = value.to_decimal() if isinstance(value, Decimal128) else Decimal(str(value))
    return int(number * 100)


def ms(value: Any) -> int | None:
    return None if value is None else epoch_ms(value.replace(tzinfo=UTC))


def wipe() -> None:
    """Every account, order, trade and checkpoint gone (one example must not see another's)."""
    for model in (Order, Invoice, Holding, Trader, EngineShard):
        collection(model).delete_many({})


def account_insert(account_id: ObjectId, cash_cents: int, holdings: dict[str, int]) -> None:
    """An account as trader_create writes it, with an id of our choosing (so its shard is known)."""
    from apps.core.clock import moment

    collection(Trader).insert_one(
        {
            "_id": account_id,
            "user_id": ObjectId(),
            "cash": Decimal128(Decimal(cash_cents).scaleb(-2)),
            "starting_cash": Decimal128(Decimal(cash_cents).scaleb(-2)),
            "reserved_cash": Decimal128("0.00"),
            "invoice_sequence": 0,
            "created_at": moment(0),
        }
    )
    for symbol, quantity in holdings.items():
        if quantity:
            collection(Holding).insert_one(
                {
                    "trader_id": account_id,
                    "symbol": symbol,
                    "quantity": quantity,
                    "average_cost": Decimal128("10.0000"),
                    "reserved": 0,
                    "updated_at": moment(0),
                }
            )


def accounts_on(shard: int, count: int) -> list[ObjectId]:
    """`count` fixed account ids that live on `shard` (the same in every run)."""
    found: list[ObjectId] = []
    number = 1
    while len(found) < count:
        candidate = ObjectId(f"5f00000000000000{number:08x}")
        if order_stream.shard_of(candidate) == shard:
            found.append(candidate)
        number += 1
    return found


# --- the committed state, read back ----------------------------------------------------------------------


@dataclass
class Stored:
    accounts: dict[ObjectId, tuple[int, int, int]]  # cash, reserved, invoice_sequence
    holdings: dict[tuple[ObjectId, str], tuple[int, Decimal, int]]  # quantity, average cost, reserved
    orders: dict[ObjectId, dict[str, Any]]
    invoices: dict[ObjectId, int]  # order id -> number
    order_documents: list[dict[str, Any]]


def stored() -> Stored:
    accounts = {
        d["_id"]: (cents(d["cash"]), cents(d["reserved_cash"]), int(d.get("invoice_sequence") or 0))
        for d in collection(Trader).find({})
    }
    holdings = {
        (d["trader_id"], d["symbol"]): (int(d["quantity"]), d["average_cost"].to_decimal(), int(d.get("reserved") or 0))
        for d in collection(Holding).find({})
    }
    documents = list(collection(Order).find({}))
    orders = {d["_id"]: order_view(d) for d in documents}
    invoices = {d["order_id"]: int(d["number"]) for d in collection(Invoice).find({})}
    return Stored(accounts, holdings, orders, invoices, documents)


def order_view(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "account": d["trader_id"],
        "client_order_id": d["client_order_id"],
        "symbol": d["symbol"],
        "side": d["side"],
        "quantity": int(d["quantity"]),
        "type": d["type"],
        "limit": cents(d.get("limit_price")),
        "stop": cents(d.get("stop_price")),
        "time_in_force": d["time_in_force"],
        "triggered": bool(d.get("triggered")),
        "reserved": cents(d.get("reserved_cash")) or 0,
        "status": d["status"],
        "reason": d.get("reason", ""),
        "price": cents(d.get("price")),
        "amount": cents(d.get("amount")),
        "created_ms": ms(d.get("created_at")),
        "expires_ms": ms(d.get("expires_at")),
    }


def conservation_problems(
    state: Stored, starting: dict[ObjectId, tuple[int, dict[str, int]]], *, average_costs: bool = True
) -> list[str]:
    """Money and shares conserved, judged from the stored state alone: each account's cash is its starting cash
    less what its filled buys cost plus what its filled sells brought; its reserved cash is what its open buys
    hold; each holding is the starting shares plus bought less sold, its reserved shares what open sells hold;
    one invoice per fill, numbered 1..n; no client_order_id twice; nothing below zero."""
    problems: list[str] = []
    cash_moved: Counter[ObjectId] = Counter()
    reserved: Counter[ObjectId] = Counter()
    shares: Counter[tuple[ObjectId, str]] = Counter()
    shares_reserved: Counter[tuple[ObjectId, str]] = Counter()
    fills: Counter[ObjectId] = Counter()
    numbers: dict[ObjectId, list[int]] = defaultdict(list)
    for order_id, o in state.orders.items():
        account, symbol = o["account"], o["symbol"]
        sign = 1 if o["side"] == "buy" else -1
        if o["status"] == "filled":
            if o["amount"] != o["price"] * o["quantity"]:
                problems.append(f"order {order_id}: amount {o['amount']} != price x quantity")
            cash_moved[account] -= sign * o["amount"]
            shares[(account, symbol)] += sign * o["quantity"]
            fills[account] += 1
            if order_id not in state.invoices:
                problems.append(f"order {order_id}: filled without an invoice")
            else:
                numbers[account].append(state.invoices[order_id])
        elif o["status"] == "open":
            reserved[account] += o["reserved"]
            if o["side"] == "sell":
                shares_reserved[(account, symbol)] += o["quantity"]
        elif o["reserved"]:
            problems.append(f"order {order_id}: {o['status']} but still reserves {o['reserved']}")
    for order_id in state.invoices:
        if state.orders.get(order_id, {}).get("status") != "filled":
            problems.append(f"invoice of order {order_id}, which is not filled")
    used = Counter((o["account"], o["client_order_id"]) for o in state.orders.values())
    problems += [f"client_order_id {key} used by {n} orders" for key, n in used.items() if n > 1]
    for account, (cash0, holdings0) in starting.items():
        cash, held_cash, sequence = state.accounts[account]
        if cash != cash0 + cash_moved[account]:
            problems.append(f"account {account}: cash {cash} != {cash0} + {cash_moved[account]} from its trades")
        if held_cash != reserved[account]:
            problems.append(f"account {account}: reserved {held_cash} != {reserved[account]} its open buys hold")
        if cash - held_cash < 0:
            problems.append(f"account {account}: negative buying power")
        if sequence != fills[account] or sorted(numbers[account]) != list(range(1, fills[account] + 1)):
            problems.append(f"account {account}: invoice sequence {sequence}, numbers {sorted(numbers[account])}")
        symbols = (
            set(holdings0) | {s for (a, s) in shares if a == account} | {s for (a, s) in state.holdings if a == account}
        )
        for symbol in symbols:
            expected = holdings0.get(symbol, 0) + shares[(account, symbol)]
            quantity, _cost, held = state.holdings.get((account, symbol), (0, Decimal(0), 0))
            if quantity != expected or held != shares_reserved[(account, symbol)] or quantity < held:
                problems.append(
                    f"account {account} {symbol}: {quantity} held ({held} reserved), expected {expected} "
                    f"({shares_reserved[(account, symbol)]} reserved)"
                )
    return problems


# --- the model ---------------------------------------------------------------------------------------------


@dataclass
class MPosition:
    quantity: int
    average_cost: Decimal
    reserved: int = 0


@dataclass
class MAccount:
    id: ObjectId
    cash: int
    reserved: int = 0
    invoices: int = 0
    positions: dict[str, MPosition] = field(default_factory=dict)
    client_orders: dict[str, ObjectId] = field(default_factory=dict)


@dataclass
class MOrder:
    id: ObjectId
    account: ObjectId
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    type: str
    limit: int | None
    stop: int | None
    time_in_force: str
    created_ms: int
    triggered: bool = False
    reserved: int = 0
    status: str = "open"
    reason: str = ""
    price: int | None = None
    amount: int | None = None
    expires_ms: int | None = None
    invoice: int | None = None
    rank: int = 0  # time priority among equal prices

    def terms(self) -> tuple[object, ...]:
        return (self.symbol, self.side, self.quantity, self.type, self.limit, self.stop, self.time_in_force)

    def view(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "type": self.type,
            "limit": self.limit,
            "stop": self.stop,
            "time_in_force": self.time_in_force,
            "triggered": self.triggered,
            "reserved": self.reserved,
            "status": self.status,
            "reason": self.reason,
            "price": self.price,
            "amount": self.amount,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
        }


Answer = tuple[int, ObjectId | None]  # status, the order answered with


class Model:
    """Accounts, positions and orders as a serial reading of the rules says they must be."""

    def __init__(self, *, day_ms: int) -> None:
        self.day_ms = day_ms
        self.accounts: dict[ObjectId, MAccount] = {}
        self.orders: dict[ObjectId, MOrder] = {}
        self._ranks = 0
        self.wrote = False

    def next_rank(self) -> int:
        self._ranks += 1
        return self._ranks

    def open_orders(self, shard: int) -> list[MOrder]:
        return [o for o in self.orders.values() if o.status == "open" and order_stream.shard_of(o.account) == shard]

    # --- commands ---
    def place(self, shard: int, prices: dict[str, int], entry: str, c: dict[str, Any]) -> Answer:
        account = self.accounts[ObjectId(c["a"])]
        o = c["o"]
        terms = asked_terms(o)
        if (known := account.client_orders.get(o["client_order_id"])) is not None:
            return self.replayed(known, o)
        price = prices.get(o["symbol"])
        if price is None:
            return (409, None)
        at = entry_position(entry)[0]
        order = MOrder(order_id_at(entry, shard), account.id, o["client_order_id"], *terms, created_ms=at)
        if order.type in ("stop", "stop_limit"):
            fills = stop_reached(order, price)
            if fills:
                order.triggered = True
                fills = order.type == "stop" or limit_reached(order, price)
        else:
            fills = order.type == "market" or limit_reached(order, price)
        position = account.positions.get(order.symbol)
        free = position.quantity - position.reserved if position else 0
        if fills:
            if order.side == "buy" and account.cash - account.reserved < price * order.quantity:
                return (409, None)
            if order.side == "sell" and free < order.quantity:
                return (409, None)
            self._accept(account, order)
            self._fill(account, order, price)
        else:
            if order.side == "sell":
                if free < order.quantity:
                    return (409, None)
                assert position is not None
                position.reserved += order.quantity
            else:
                needed = (order.stop if order.type == "stop" else order.limit) * order.quantity  # type: ignore[operator]
                if account.cash - account.reserved < needed:
                    return (409, None)
                order.reserved = needed
                account.reserved += needed
            if order.time_in_force in ("ioc", "fok"):  # checked as a resting order, then cancelled at once
                if order.side == "sell":
                    assert position is not None
                    position.reserved -= order.quantity
                account.reserved -= order.reserved
                order.reserved = 0
                order.status, order.reason = "cancelled", f"{order.time_in_force}_unfilled"
                self._accept(account, order)
                return (201, order.id)
            order.expires_ms = at + self.day_ms if order.time_in_force == "day" else None
            order.rank = self.next_rank()
            self._accept(account, order)
        return (201, order.id)

    def replayed(self, known: ObjectId, o: dict[str, Any]) -> Answer:
        """A client_order_id used before: the original order again when the terms are the same, else 409."""
        original = self.orders[known]
        return (200, original.id) if original.terms() == asked_terms(o) else (409, None)

    def _accept(self, account: MAccount, order: MOrder) -> None:
        account.client_orders[order.client_order_id] = order.id
        self.orders[order.id] = order
        self.wrote = True

    def _fill(self, account: MAccount, order: MOrder, price: int) -> None:
        amount = price * order.quantity
        account.reserved -= order.reserved
        order.reserved = 0
        position = account.positions.get(order.symbol)
        if order.side == "buy":
            account.cash -= amount
            if position is None:
                position = account.positions[order.symbol] = MPosition(0, Decimal(0))
            total = position.average_cost * position.quantity + Decimal(amount) / 100
            position.quantity += order.quantity
            position.average_cost = (total / position.quantity).quantize(FOUR_PLACES, ROUND_HALF_EVEN)
        else:
            assert position is not None
            account.cash += amount
            position.quantity -= order.quantity
            if position.quantity == 0 and position.reserved == 0:
                del account.positions[order.symbol]
        account.invoices += 1
        order.status, order.price, order.amount, order.invoice = "filled", price, amount, account.invoices
        self.wrote = True

    def _close(self, order: MOrder, status: str, reason: str) -> None:
        account = self.accounts[order.account]
        account.reserved -= order.reserved
        order.reserved = 0
        if order.side == "sell":
            position = account.positions[order.symbol]
            position.reserved -= order.quantity
            if position.quantity == 0 and position.reserved == 0:
                del account.positions[order.symbol]
        order.status, order.reason = status, reason
        self.wrote = True

    def cancel(self, c: dict[str, Any]) -> Answer:
        order = self.orders.get(ObjectId(c["id"]))
        if order is None or order.account != ObjectId(c["a"]):
            return (404, None)
        if order.status == "open":
            self._close(order, "cancelled", "cancelled")
        return (200, order.id)

    def cancel_all(self, c: dict[str, Any]) -> Answer:
        account = ObjectId(c["a"])
        for order in [o for o in self.orders.values() if o.status == "open" and o.account == account]:
            if c.get("symbol") in (None, order.symbol):
                self._close(order, "cancelled", "cancelled")
        return (200, None)

    def close(self, shard: int, prices: dict[str, int], entry: str, c: dict[str, Any]) -> Answer:
        """A market sell of the position (all, a quantity or a percentage), checked whole before anything changes."""
        account, symbol = self.accounts[ObjectId(c["a"])], c["symbol"]
        sell = {"client_order_id": c["client_order_id"], "symbol": symbol, "side": "sell", "type": "market"}
        sell |= {"limit_cents": None, "stop_cents": None, "time_in_force": "day"}
        if (known := account.client_orders.get(c["client_order_id"])) is not None:
            return self.replayed(known, {**sell, "quantity": self.orders[known].quantity})
        position = account.positions.get(symbol)
        if position is None or position.quantity == 0:
            return (404, None)
        free = position.quantity if c["cancel_orders"] else position.quantity - position.reserved
        quantity = c["quantity"] or position.quantity * (c["percent"] or 100) // 100
        if quantity < 1:
            return (422, None)
        if quantity > free or symbol not in prices:
            return (409, None)
        if c["cancel_orders"]:
            for order in [o for o in self.orders.values() if o.status == "open" and o.account == account.id]:
                if order.symbol == symbol:
                    self._close(order, "cancelled", "position_closed")
        return self.place(shard, prices, entry, {**c, "o": {**sell, "quantity": quantity}})

    def tick(self, shard: int, prices: dict[str, int], symbol: str, price: int) -> None:
        prices[symbol] = price
        reached = []
        for order in self.open_orders(shard):
            if order.symbol != symbol:
                continue
            waits = order.type in ("stop", "stop_limit") and not order.triggered
            if waits and stop_reached(order, price):
                side, key = (BUY_STOP, order.stop) if order.side == "buy" else (SELL_STOP, -order.stop)  # type: ignore[operator]
            elif not waits and limit_reached(order, price):
                side, key = (BUY_LIMIT, -order.limit) if order.side == "buy" else (SELL_LIMIT, order.limit)  # type: ignore[operator]
            else:
                continue
            reached.append((side, key, order.rank, order))
        for *_, order in sorted(reached, key=lambda r: r[:3]):
            account = self.accounts[order.account]
            if order.type == "stop_limit" and not order.triggered:
                order.triggered = True
                self.wrote = True
                if not limit_reached(order, price):
                    order.rank = self.next_rank()  # rests again, now as a limit order
                    continue
            at = price if order.type == "stop" else order.limit
            assert at is not None
            if order.side == "sell":
                account.positions[order.symbol].reserved -= order.quantity
                position = account.positions[order.symbol]
                if position.quantity - position.reserved < order.quantity:
                    position.reserved += order.quantity
                    self._close(order, "cancelled", "insufficient_holding")
                    continue
            elif account.cash - account.reserved + order.reserved < at * order.quantity:
                self._close(order, "cancelled", "insufficient_cash")
                continue
            self._fill(account, order, at)

    def expire(self, shard: int, now: int) -> None:
        for order in self.open_orders(shard):
            if order.expires_ms is not None and order.expires_ms <= now:
                self._close(order, "expired", "expired")

    def decide(self, shard: int, prices: dict[str, int], entry: str, c: dict[str, Any]) -> Answer | None:
        kind = c["k"]
        if kind == "place":
            return self.place(shard, prices, entry, c)
        if kind == "cancel":
            return self.cancel(c)
        if kind == "cancel_all":
            return self.cancel_all(c)
        if kind == "close":
            return self.close(shard, prices, entry, c)
        if kind == "ticks":
            for symbol, price in c["p"]:
                self.tick(shard, prices, symbol, price)
        elif kind == "expire":
            self.expire(shard, c["now"])
        return None

    def answer_committed(self, shard: int, entry: str, c: dict[str, Any]) -> Answer | None:
        """A re-read entry whose batch committed: what it did, never decided again (503 when it wrote nothing)."""
        if c["k"] in ("place", "close"):
            asked = c["o"] if c["k"] == "place" else c
            known = self.accounts[ObjectId(c["a"])].client_orders.get(asked["client_order_id"])
            made_here = order_id_at(entry, shard)
            if known is None or known.binary > made_here.binary:  # refused (a later entry may have made it)
                return (503, None)
            if known == made_here:
                return (201, known)
            if c["k"] == "close":
                original = self.orders[known]
                asked = {"symbol": c["symbol"], "side": "sell", "quantity": original.quantity, "type": "market"}
                asked |= {"limit_cents": None, "stop_cents": None, "time_in_force": "day"}
            return self.replayed(known, asked)
        if c["k"] == "cancel":
            order = self.orders.get(ObjectId(c["id"]))
            if order is None or order.account != ObjectId(c["a"]):
                return (503, None)
            return (200, order.id)
        if c["k"] == "cancel_all":
            return (503, None)  # what it cancelled is not answered again: a retry cancels what is left
        return None

    # --- comparing ---
    def expected(self) -> tuple[dict[Any, Any], ...]:
        accounts = {a.id: (a.cash, a.reserved, a.invoices) for a in self.accounts.values()}
        holdings = {
            (a.id, symbol): (p.quantity, p.average_cost, p.reserved)
            for a in self.accounts.values()
            for symbol, p in a.positions.items()
        }
        orders = {o.id: o.view() for o in self.orders.values()}
        invoices = {o.id: o.invoice for o in self.orders.values() if o.invoice is not None}
        return accounts, holdings, orders, invoices


def asked_terms(o: dict[str, Any]) -> tuple[Any, ...]:
    """A place command's terms, in MOrder.terms() order."""
    return (o["symbol"], o["side"], o["quantity"], o["type"], o["limit_cents"], o["stop_cents"], o["time_in_force"])


def stop_reached(order: MOrder, price: int) -> bool:
    assert order.stop is not None
    return price >= order.stop if order.side == "buy" else price <= order.stop


def limit_reached(order: MOrder, price: int) -> bool:
    assert order.limit is not None
    return price <= order.limit if order.side == "buy" else price >= order.limit
