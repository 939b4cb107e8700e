"""The matcher: resting orders per symbol in price order, filled when a tick crosses them.

- Reads the tick stream through its own consumer group (`matcher`; apps/market/stream.py
  `TickGroupReader`), as the persister does through its own: a restarted matcher re-reads what
  it was given and never acknowledged.
- Holds every open order in memory (`OrderBook`), loaded from MongoDB at start and kept current
  by the book's change stream (apps/portfolio/book_feed.py) and a periodic reload.
- Each side of a symbol is a sorted list keyed so that the orders a price crosses are a prefix:
  a tick costs one dict lookup and four bisections, whatever the size of the book.
- Fills go through `order_fill`: one conditional write on the order's state in the trading
  transaction, so a re-read tick, a second matcher or a racing cancel never fill twice.
- Expires ended day orders every MATCHER_EXPIRY_SECONDS from its own heap of the book's expiry
  times (a database sweep, ~0.4 s over 10 000 open orders on SecantusDB, runs only at each reload).
"""

import heapq
import itertools
import logging
import math
import time
from bisect import bisect_right, insort
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Protocol

import redis
from django.conf import settings
from django.db import DatabaseError
from pymongo.errors import PyMongoError

from apps.core.clock import now_ms as clock_now_ms
from apps.core.locks import LockTimeout
from apps.core.metrics import MATCHER_BOOK, MATCHER_FILL_SECONDS, MATCHER_FILLS, MATCHER_LAG
from apps.market.selectors import latest_prices, tick_group_reader
from apps.portfolio.book_feed import ADD, RestingOrder, book_changes, book_position
from apps.portfolio.models import OrderType, Side
from apps.portfolio.orders import (
    limit_crossed,
    open_order,
    order_expire,
    order_fill,
    order_trigger,
    orders_expire_due,
    resting_orders,
)
from apps.portfolio.transactions import TransactionBusy

logger = logging.getLogger(__name__)

MATCHER_GROUP = "matcher"
# The four sorted lists of a symbol, and the sign that makes "crossed" a prefix (key <= sign * price):
# buy limits fill at or below their limit, sell limits at or above, buy stops trigger at or above, sell stops below.
BUY_LIMIT, SELL_LIMIT, BUY_STOP, SELL_STOP = range(4)
SIGNS = (-1, 1, 1, -1)


class OrderBook:
    """Resting orders per symbol in price order; `crossed` takes out every order a price crosses."""

    def __init__(self) -> None:
        self._lists: dict[str, tuple[list[tuple[int, int, str]], ...]] = {}
        self._entries: dict[str, tuple[RestingOrder, int]] = {}  # id -> (order, its generation)
        self._generations = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, order_id: str) -> bool:
        return order_id in self._entries

    def symbols(self) -> list[str]:
        return sorted({entry.symbol for entry, _ in self._entries.values()})

    def add(self, entry: RestingOrder) -> None:
        """Add (or replace: a stop limit that triggered moves to its limit list) an order."""
        if entry.waits_for_stop:
            side, price = (BUY_STOP if entry.side == Side.BUY else SELL_STOP), entry.stop_cents
        else:
            side, price = (BUY_LIMIT if entry.side == Side.BUY else SELL_LIMIT), entry.limit_cents
        assert price is not None
        generation = next(self._generations)
        self._entries[entry.id] = (entry, generation)
        lists = self._lists.setdefault(entry.symbol, ([], [], [], []))
        insort(lists[side], (SIGNS[side] * price, generation, entry.id))

    def remove(self, order_id: str) -> None:
        """Forget an order (its list slot is dropped when a price reaches it)."""
        self._entries.pop(order_id, None)

    def crossed(self, symbol: str, price_cents: int) -> list[RestingOrder]:
        """Take out and return every order of `symbol` that `price_cents` crosses, best priced first."""
        lists = self._lists.get(symbol)
        if lists is None:
            return []
        taken: list[RestingOrder] = []
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


class TickSource(Protocol):
    def read(self, count: int) -> list[tuple[bytes, tuple[str, int, int] | None]]:
        """Entries as (entry id, (symbol, price in cents, tick timestamp ms) or None when its data is gone)."""

    def acknowledge(self, entry_ids: Sequence[bytes]) -> None: ...


def _price(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


class Matcher:
    """Matches ticks against the book; `step()` is one read-match-acknowledge cycle."""

    FILL_ERRORS = (LockTimeout, TransactionBusy, PyMongoError, DatabaseError)

    def __init__(
        self,
        source: TickSource,
        *,
        client: redis.Redis,
        batch_max: int = 1000,
        expiry_seconds: float = 5.0,
        resync_seconds: float = 60.0,
        fill: Callable[..., bool] = order_fill,
        clock: Callable[[], float] = time.monotonic,
        now_ms: Callable[[], int] = clock_now_ms,
    ) -> None:
        self.source, self.client, self.batch_max = source, client, batch_max
        self.expiry_seconds, self.resync_seconds = expiry_seconds, resync_seconds
        self.fill, self.clock, self.now_ms = fill, clock, now_ms
        self.book = OrderBook()
        self.last_price: dict[str, int] = {}  # cents, per symbol: what a newly added order is checked against
        self.fills = 0
        self._book_after = "0-0"
        self._expiries: list[tuple[int, str]] = []  # (expires_ms, order id) of the day orders in the book: a heap
        self._next_expiry = self._next_resync = 0.0

    def load(self) -> None:
        """(Re)build the book from MongoDB, then match it against the latest quotes (ticks missed while down)."""
        self._book_after = book_position(self.client)  # first: a change made during the load is read after it
        book = OrderBook()
        entries = resting_orders()
        for entry in entries:
            book.add(entry)
        self.book = book
        self._expiries = [(entry.expires_ms, entry.id) for entry in entries if entry.expires_ms is not None]
        heapq.heapify(self._expiries)
        self._next_resync = self.clock() + self.resync_seconds
        orders_expire_due()  # the safety net: day orders that ended while no matcher knew of them
        MATCHER_BOOK.set(len(book))
        try:
            quotes = latest_prices(book.symbols())
        except redis.RedisError as error:
            logger.warning("matcher: no quotes to catch up with (%s); the next ticks will", error)
            return
        for symbol, price in quotes.items():
            self.on_tick(symbol, int(price * 100), timestamp=None)

    def step(self) -> int:
        """Read ticks, apply book changes, match, acknowledge; sweep expiries and reload when due. Fills made."""
        before = self.fills
        entries = self.source.read(self.batch_max)
        self.apply_book_changes()
        newest = None
        for _, tick in entries:
            if tick is not None:
                symbol, cents, timestamp = tick
                self.on_tick(symbol, cents, timestamp=timestamp)
                newest = timestamp if newest is None else max(newest, timestamp)
        self.source.acknowledge([entry_id for entry_id, _ in entries])
        if newest is not None:
            MATCHER_LAG.set(max(0.0, (self.now_ms() - newest) / 1000))
        now = self.clock()
        if now >= self._next_expiry:
            self._next_expiry = now + self.expiry_seconds
            self.expire_due()
        if now >= self._next_resync:
            self.load()
        MATCHER_BOOK.set(len(self.book))
        return self.fills - before

    def apply_book_changes(self) -> None:
        """Orders placed, cancelled or expired since the last read; a new one the last price crosses fills now."""
        while True:
            changes, self._book_after = book_changes(self.client, self._book_after)
            for op, entry in changes:
                if op != ADD:
                    self.book.remove(entry.id)
                    continue
                self.book.add(entry)
                if entry.expires_ms is not None:
                    heapq.heappush(self._expiries, (entry.expires_ms, entry.id))
                if (last := self.last_price.get(entry.symbol)) is not None:
                    self.on_tick(entry.symbol, last, timestamp=None)
            if not changes:
                return

    def expire_due(self) -> None:
        """Expire the book's day orders whose end passed: from the matcher's own heap, no database query."""
        now = self.now_ms()
        while self._expiries and self._expiries[0][0] <= now:
            _, order_id = heapq.heappop(self._expiries)
            if order_id not in self.book:
                continue  # filled or cancelled meanwhile
            self.book.remove(order_id)
            try:
                order_expire(order_id)
            except (PyMongoError, DatabaseError) as error:
                logger.warning("matcher: order %s not expired yet (%s); the next reload sweeps it", order_id, error)

    def on_tick(self, symbol: str, cents: int, *, timestamp: int | None) -> None:
        self.last_price[symbol] = cents
        for entry in self.book.crossed(symbol, cents):
            if entry.type == OrderType.STOP_LIMIT and not entry.triggered:
                self._trigger(entry, cents, timestamp)
            else:
                self._fill(entry, cents, timestamp)

    def _trigger(self, entry: RestingOrder, cents: int, timestamp: int | None) -> None:
        """A stop limit's stop was crossed: it becomes a limit order (recorded, so a restart keeps it)."""
        try:
            order_trigger(entry.id)
        except (PyMongoError, DatabaseError) as error:
            logger.warning("matcher: order %s not triggered (%s); the next crossing tick tries again", entry.id, error)
            self.book.add(entry)
            return
        limit = replace(entry, triggered=True)
        if limit_crossed(limit, cents):
            self._fill(limit, cents, timestamp)
        else:
            self.book.add(limit)

    def _fill(self, entry: RestingOrder, cents: int, timestamp: int | None) -> None:
        try:
            order = open_order(entry.id)
            if order is None:
                return  # cancelled, expired or filled by another matcher meanwhile
            filled = self.fill(order, tick_price=_price(cents))
        except self.FILL_ERRORS as error:
            logger.warning("matcher: order %s not filled yet (%s); the next crossing tick tries again", entry.id, error)
            self.book.add(entry)
            return
        if filled:
            self.fills += 1
            MATCHER_FILLS.inc()
            if timestamp is not None:
                MATCHER_FILL_SECONDS.observe(max(0.0, (self.now_ms() - timestamp) / 1000))


def matcher_for(consumer: str, client: redis.Redis) -> Matcher:
    """A matcher with the settings' batch, expiry and reload periods, reading as `consumer`."""
    return Matcher(
        tick_group_reader(client, group=MATCHER_GROUP, consumer=consumer),
        client=client,
        batch_max=settings.MATCHER_BATCH_MAX,
        expiry_seconds=settings.MATCHER_EXPIRY_SECONDS,
        resync_seconds=settings.MATCHER_RESYNC_SECONDS,
    )
