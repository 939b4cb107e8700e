"""What the engine holds in memory for its shard: accounts, their positions, open orders, last prices.

Plain data, no I/O. Money is whole cents (int): exact, and cheap on the engine's one thread; the journal
converts at the database boundary (Decimal128). An average cost keeps 4 decimals (Decimal), as stored.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal

from bson import ObjectId

from apps.portfolio.engine.book import OrderBook

RECENT_ORDERS = 10_000  # closed orders kept for a repeated client_order_id's answer (older ones: prefetched)


@dataclass
class Position:
    quantity: int
    average_cost: Decimal  # 4 decimals
    reserved: int = 0  # shares held by resting sell orders

    @property
    def free(self) -> int:
        return self.quantity - self.reserved


@dataclass
class Account:
    """One account (today one per trader). `client_orders`: every client_order_id it ever used -> order id."""

    id: ObjectId
    user_id: ObjectId
    cash: int  # cents
    reserved: int  # cents held by resting buy orders
    invoice_sequence: int
    positions: dict[str, Position] = field(default_factory=dict)
    client_orders: dict[str, ObjectId] = field(default_factory=dict)

    @property
    def buying_power(self) -> int:
        return self.cash - self.reserved


@dataclass
class OrderState:
    """An order as the engine knows it; field for field what apps.portfolio.models.Order stores."""

    id: ObjectId
    account_id: ObjectId
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    type: str
    time_in_force: str
    created_ms: int
    limit_cents: int | None = None
    stop_cents: int | None = None
    triggered: bool = False
    reserved_cents: int = 0  # cash a resting buy holds
    status: str = "open"
    reason: str = ""
    price_cents: int | None = None
    amount_cents: int | None = None
    expires_ms: int | None = None
    closed_ms: int | None = None

    @property
    def waits_for_stop(self) -> bool:
        return self.type in ("stop", "stop_limit") and not self.triggered

    def terms(self) -> tuple[object, ...]:
        """What a repeated client_order_id must ask again to be the same order."""
        return (self.symbol, self.side, self.quantity, self.type, self.limit_cents, self.stop_cents, self.time_in_force)


@dataclass
class EngineState:
    shard: int
    accounts: dict[ObjectId, Account] = field(default_factory=dict)
    open_orders: dict[ObjectId, OrderState] = field(default_factory=dict)
    recent: OrderedDict[ObjectId, OrderState] = field(default_factory=OrderedDict)
    prices: dict[str, int] = field(default_factory=dict)  # last tick per symbol, cents
    book: OrderBook[OrderState] = field(default_factory=OrderBook)

    def order(self, order_id: ObjectId) -> OrderState | None:
        return self.open_orders.get(order_id) or self.recent.get(order_id)

    def remember(self, order: OrderState) -> None:
        """A closed order, kept a while for replays (bounded: the oldest go first)."""
        self.recent[order.id] = order
        self.recent.move_to_end(order.id)
        while len(self.recent) > RECENT_ORDERS:
            self.recent.popitem(last=False)

    def rest(self, order: OrderState) -> None:
        self.open_orders[order.id] = order
        self.book.add(order)

    def unrest(self, order: OrderState) -> None:
        self.open_orders.pop(order.id, None)
        self.book.remove(order.id)
        self.remember(order)

    def next_expiry_ms(self) -> int | None:
        return self.book.next_expiry_ms()
