"""Bounded recent history per symbol (Properties 21 and 24): a circular buffer, oldest evicted first.

Two forms of one rule. `BoundedRing` is the in-process circular buffer (a
fixed array and a moving head: appends are O(1), memory never grows past the
capacity). The shared form lives in Redis, one list per symbol, newest first:
LPUSH then LTRIM to `settings.PRICE_RING_SIZE` (one script call per batch) in the
simulator's pipeline, so every process reads the same recent points in one LRANGE.

Overflow (the normal state of a full ring) evicts the oldest points, counts them
(RING_EVICTIONS) and logs them, at most one line per `RING_EVICTION_LOG_SECONDS`
with the total since the last line (`EvictionLog`), so a steady feed cannot flood the log.
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from django.conf import settings
from redis.client import Pipeline

from apps.core.redis import key
from apps.market.ticks import Tick

T = TypeVar("T")
logger = logging.getLogger(__name__)
RING_EVICTION_LOG_SECONDS = 60.0


class BoundedRing(Generic[T]):
    """A circular buffer of at most `capacity` items; appending to a full ring evicts the oldest."""

    __slots__ = ("_head", "_items", "_size", "capacity", "evictions")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._items: list[T | None] = [None] * capacity
        self._head = 0  # index of the oldest item
        self._size = 0
        self.evictions = 0

    def append(self, item: T) -> T | None:
        """Add `item` as the newest; return the evicted oldest item when the ring was full."""
        if self._size < self.capacity:
            self._items[(self._head + self._size) % self.capacity] = item
            self._size += 1
            return None
        evicted = self._items[self._head]
        self._items[self._head] = item
        self._head = (self._head + 1) % self.capacity
        self.evictions += 1
        return evicted

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def oldest(self) -> T | None:
        return self._items[self._head] if self._size else None

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[T]:
        """Oldest first."""
        for offset in range(self._size):
            item = self._items[(self._head + offset) % self.capacity]
            yield item  # type: ignore[misc]  # slots within the size are always filled


def ring_key(symbol: str) -> str:
    return key("ring", symbol)


def ring_point(tick_id: str, tick: Tick) -> dict[str, Any]:
    """One point of the recent-history ring: enough to draw the chart and to page by cursor."""
    return {"tick_id": tick_id, "price": tick.price, "volume": tick.volume, "timestamp": tick.timestamp}


# One script call stores a batch in every symbol's ring (LPUSH, then LTRIM to the bound, per symbol,
# atomically inside Redis): one command a batch on the wire instead of two per symbol, which were the
# simulator's largest share of Redis commands. Replies: each ring's length after its push.
RING_PUSH = """
local size = tonumber(ARGV[1])
local lengths = {}
local at = 2
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[at])
  lengths[i] = redis.call('LPUSH', key, unpack(ARGV, at + 1, at + count))
  redis.call('LTRIM', key, 0, size - 1)
  at = at + count + 1
end
return lengths
"""


def stage_ring(pipe: Pipeline, numbered: Sequence[tuple[str, Tick]]) -> int:
    """Stage the batch's ring updates on `pipe` (one script call); return how many commands were staged (0 or 1).

    The reply (each ring's length after the push) tells `ring_evictions` how many points the trim dropped.
    """
    points: dict[str, list[str]] = {}
    for tick_id, tick in numbered:
        points.setdefault(tick.symbol, []).append(json.dumps(ring_point(tick_id, tick), separators=(",", ":")))
    if not points:
        return 0
    arguments: list[str | int] = [settings.PRICE_RING_SIZE]
    for encoded in points.values():
        arguments += [len(encoded), *encoded]
    pipe.eval(RING_PUSH, len(points), *(ring_key(symbol) for symbol in points), *arguments)
    return 1


def ring_evictions(lengths: Sequence[Any]) -> int:
    """Points evicted by a staged ring update, from its reply (each ring's length after the push)."""
    return sum(max(0, int(length) - settings.PRICE_RING_SIZE) for length in lengths)


class EvictionLog:
    """Log ring evictions at most once per `interval` seconds, each line with the evictions since the last."""

    def __init__(self, *, interval: float = RING_EVICTION_LOG_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._pending = 0
        self._last_logged: float | None = None
        self._guard = threading.Lock()

    def record(self, evicted: int) -> bool:
        """Note `evicted` points; True when this call wrote the log line."""
        if evicted <= 0:
            return False
        with self._guard:
            self._pending += evicted
            now = self.clock()
            if self._last_logged is not None and now - self._last_logged < self.interval:
                return False
            total, self._pending, self._last_logged = self._pending, 0, now
        logger.info(
            "ring overflow: evicted the oldest %d point(s) (each symbol keeps its newest %d); next line in %.0f s",
            total,
            settings.PRICE_RING_SIZE,
            self.interval,
        )
        return True
