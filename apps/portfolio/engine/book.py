"""Resting orders per symbol in price order, and their expiry times: what a tick or the clock reaches.

Each side of a symbol is a sorted list keyed so that the orders a price crosses are a prefix: a tick
costs one dict lookup and four bisections, whatever the size of the book. Removal is lazy (an entry's
generation must match), so a cancel is O(1).
"""

from __future__ import annotations

import heapq
import itertools
import math
from bisect import bisect_right, insort
from typing import Generic, Protocol, TypeVar


class Resting(Protocol):
    """What the book needs of an order (apps/portfolio/engine/state.py OrderState)."""

    @property
    def id(self) -> object: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def limit_cents(self) -> int | None: ...
    @property
    def stop_cents(self) -> int | None: ...
    @property
    def expires_ms(self) -> int | None: ...
    @property
    def waits_for_stop(self) -> bool: ...


OrderState = TypeVar("OrderState", bound=Resting)

# The four sorted lists of a symbol, and the sign that makes "crossed" a prefix (key <= sign * price):
# buy limits fill at or below their limit, sell limits at or above, buy stops trigger at or above, sell stops below.
BUY_LIMIT, SELL_LIMIT, BUY_STOP, SELL_STOP = range(4)
SIGNS = (-1, 1, 1, -1)


class OrderBook(Generic[OrderState]):
    """Resting orders per symbol in price order; `crossed` takes out every order a price crosses."""

    def __init__(self) -> None:
        self._lists: dict[str, tuple[list[tuple[int, int, object]], ...]] = {}
        self._entries: dict[object, tuple[OrderState, int]] = {}  # id -> (order, its generation)
        self._expiries: list[tuple[int, int, object]] = []  # (expires_ms, generation, id): a heap
        self._generations = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._entries

    def add(self, order: OrderState) -> None:
        """Add (or move: a stop limit that triggered goes to its limit list) an order."""
        if order.waits_for_stop:
            side, price = (BUY_STOP if order.side == "buy" else SELL_STOP), order.stop_cents
        else:
            side, price = (BUY_LIMIT if order.side == "buy" else SELL_LIMIT), order.limit_cents
        assert price is not None
        generation = next(self._generations)
        self._entries[order.id] = (order, generation)
        lists = self._lists.setdefault(order.symbol, ([], [], [], []))
        insort(lists[side], (SIGNS[side] * price, generation, order.id))
        if order.expires_ms is not None:
            heapq.heappush(self._expiries, (order.expires_ms, generation, order.id))

    def remove(self, order_id: object) -> None:
        """Forget an order (its list and heap slots are dropped when reached)."""
        self._entries.pop(order_id, None)

    def crossed(self, symbol: str, price_cents: int) -> list[OrderState]:
        """Take out and return every order of `symbol` that `price_cents` crosses, best priced first per list."""
        lists = self._lists.get(symbol)
        if lists is None:
            return []
        taken: list[OrderState] = []
        for side, orders in enumerate(lists):
            cut = bisect_right(orders, (SIGNS[side] * price_cents, math.inf))
            if not cut:
                continue
            for _, generation, order_id in orders[:cut]:
                current = self._entries.get(order_id)
                if current is not None and current[1] == generation:  # else removed, or moved to another list
                    taken.append(current[0])
                    del self._entries[order_id]
            del orders[:cut]
        return taken

    def expired(self, now_ms: int) -> list[OrderState]:
        """Take out and return every order whose expiry is at or before `now_ms`, soonest first."""
        taken: list[OrderState] = []
        while self._expiries and self._expiries[0][0] <= now_ms:
            _, generation, order_id = heapq.heappop(self._expiries)
            current = self._entries.get(order_id)
            if current is not None and current[1] == generation:
                taken.append(current[0])
                del self._entries[order_id]
        return taken

    def next_expiry_ms(self) -> int | None:
        """When the soonest live order expires (stale heap slots are dropped on the way)."""
        while self._expiries:
            expires_ms, generation, order_id = self._expiries[0]
            current = self._entries.get(order_id)
            if current is not None and current[1] == generation:
                return expires_ms
            heapq.heappop(self._expiries)
        return None
