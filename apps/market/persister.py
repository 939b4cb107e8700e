"""The write-behind persister: tick stream -> MongoDB, throttled, lossless, idempotent.

- Reads the stream through a consumer group; a restarted persister first
  re-reads its own pending entries (delivered, never acknowledged), and claims
  entries another consumer left pending for a minute.
- One bulk insert per batch, at most `writes_per_second` in any one-second
  window (Property 7), however fast ticks arrive: batches just grow.
- Acknowledges (and deletes) entries only after the insert succeeded; a
  re-delivered tick hits the unique tick_id index and counts as already stored
  (Property 36: kill -9 at any moment loses nothing and stores nothing twice).
- MongoDB or Redis unreachable: the batch is kept, retried with exponential
  backoff; the backlog waits in the stream (the simulator slows down, Property 9).
"""

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
from bson import Decimal128
from pymongo.errors import BulkWriteError, PyMongoError

from apps.market.models import PriceTick
from apps.market.ring import BoundedRing
from apps.market.stream import CONSUMER_GROUP, NumberedTick, decode_entry, ensure_consumer_group, stream_key
from apps.market.ticks import tick_price_decimal
from apps.monitoring.metrics import (
    PERSISTER_BACKLOG,
    PERSISTER_BATCH,
    PERSISTER_LAG,
    PERSISTER_TICKS,
    PERSISTER_WRITES,
)

logger = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
CLAIM_IDLE_MS = 60_000


class WriteLimiter:
    """At most `per_second` writes in any one-second window: it remembers the last `per_second` write times."""

    def __init__(self, per_second: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._recent: BoundedRing[float] = BoundedRing(per_second)
        self._clock = clock

    def wait_time(self) -> float:
        """Seconds until another write keeps every one-second window within the limit."""
        oldest = self._recent.oldest()
        if len(self._recent) < self._recent.capacity or oldest is None:
            return 0.0
        return max(0.0, oldest + 1.0 - self._clock())

    def record(self) -> None:
        self._recent.append(self._clock())


@dataclass(frozen=True)
class StreamEntry:
    entry_id: bytes
    tick: NumberedTick | None  # None: the entry's data is gone (nothing to store, only to acknowledge)


class TickSource(Protocol):
    def read(self, count: int) -> list[StreamEntry]: ...

    def acknowledge(self, entry_ids: Sequence[bytes]) -> int:
        """Acknowledge and delete the entries; return the backlog left."""


class TickStore(Protocol):
    def insert(self, ticks: Sequence[NumberedTick]) -> int:
        """Store the ticks in one write; return how many were new (duplicates are already stored)."""


class RedisTickSource:
    """The tick stream through the persisters' consumer group."""

    BLOCK_MS = 1000

    def __init__(self, client: redis.Redis, *, consumer: str) -> None:
        self.client = client
        self.consumer = consumer
        self._own_pending_done = False
        self._next_claim = 0.0
        ensure_consumer_group(client)

    def read(self, count: int) -> list[StreamEntry]:
        if not self._own_pending_done:  # after a crash: what we were given and never acknowledged
            entries = self._read_group("0", count, block=None)
            if entries:
                return entries
            self._own_pending_done = True
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + CLAIM_IDLE_MS / 1000
            claimed = self._claim_abandoned(count)
            if claimed:
                return claimed
        return self._read_group(">", count, block=self.BLOCK_MS)

    def _read_group(self, start: str, count: int, *, block: int | None) -> list[StreamEntry]:
        reply: Any = self.client.xreadgroup(
            CONSUMER_GROUP, self.consumer, {stream_key(): start}, count=count, block=block
        )
        return [self._entry(entry_id, fields) for _, entries in (reply or []) for entry_id, fields in entries]

    def _claim_abandoned(self, count: int) -> list[StreamEntry]:
        """Entries another consumer was given and has not acknowledged for a minute (it died)."""
        reply: Any = self.client.xautoclaim(stream_key(), CONSUMER_GROUP, self.consumer, CLAIM_IDLE_MS, count=count)
        if reply[1]:
            logger.warning("claimed %s entries abandoned by another persister", len(reply[1]))
        deleted = [StreamEntry(entry_id, None) for entry_id in (reply[2] if len(reply) > 2 else [])]
        return [self._entry(entry_id, fields) for entry_id, fields in reply[1]] + deleted

    @staticmethod
    def _entry(entry_id: bytes, fields: dict[bytes, bytes] | None) -> StreamEntry:
        return StreamEntry(entry_id, decode_entry(fields) if fields else None)

    def acknowledge(self, entry_ids: Sequence[bytes]) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(stream_key(), CONSUMER_GROUP, *entry_ids)
        pipe.xdel(stream_key(), *entry_ids)  # only acknowledged entries: the stream length is the backlog
        pipe.xlen(stream_key())
        return int(pipe.execute()[-1])


class MongoTickStore:
    """Bulk inserts through the Django connection's collection (unordered: one bad tick never blocks others)."""

    def insert(self, ticks: Sequence[NumberedTick]) -> int:
        if not ticks:
            return 0
        documents = [
            {
                "tick_id": tick_id,
                "symbol": tick.symbol,
                "price": Decimal128(tick_price_decimal(tick.price)),
                "previous_close": Decimal128(tick_price_decimal(tick.previous_close)),
                "volume": tick.volume,
                "recorded_at": datetime.fromtimestamp(tick.timestamp / 1000, tz=UTC),
            }
            for tick_id, tick in ticks
        ]
        collection = PriceTick.collection()
        try:
            return len(collection.insert_many(documents, ordered=False).inserted_ids)
        except BulkWriteError as error:
            others = [e for e in error.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
            if others:
                raise
            return int(error.details.get("nInserted", 0))  # the rest were stored before a crash or re-delivery


@dataclass
class PersisterStats:
    writes: int = 0
    stored: int = 0
    duplicates: int = 0
    failures: int = 0
    backlog: int = 0


class TickPersister:
    BACKOFF_START = 0.5
    BACKOFF_MAX = 30.0

    def __init__(
        self,
        source: TickSource,
        store: TickStore,
        *,
        writes_per_second: int,
        batch_max: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.source, self.store = source, store
        self.limiter = WriteLimiter(writes_per_second, clock=clock)
        self.batch_max = batch_max
        self.sleep, self.now_ms = sleep, now_ms
        self.stats = PersisterStats()
        self._batch: list[StreamEntry] = []  # read, not yet stored and acknowledged
        self._backoff = self.BACKOFF_START

    def step(self) -> int:
        """One read-store-acknowledge cycle; return the ticks stored (0 when idle or failing)."""
        try:
            if not self._batch:
                self._batch = self.source.read(self.batch_max)
                if not self._batch:
                    return 0
            ticks = [entry.tick for entry in self._batch if entry.tick is not None]
            stored = self._store(ticks) if ticks else 0
            self.stats.backlog = self.source.acknowledge([entry.entry_id for entry in self._batch])
        except (PyMongoError, redis.RedisError) as error:
            self.stats.failures += 1
            logger.warning("persister: %s; %s ticks kept, retrying in %.1f s", error, len(self._batch), self._backoff)
            self.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, self.BACKOFF_MAX)
            return 0
        self._backoff = self.BACKOFF_START
        PERSISTER_BACKLOG.set(self.stats.backlog)
        if ticks:
            PERSISTER_LAG.set(max(0.0, (self.now_ms() - min(t.timestamp for _, t in ticks)) / 1000))
        self._batch = []
        return stored

    def _store(self, ticks: list[NumberedTick]) -> int:
        wait = self.limiter.wait_time()
        if wait > 0:
            self.sleep(wait)
        self.limiter.record()  # a failed attempt is a write operation too
        self.stats.writes += 1
        PERSISTER_WRITES.inc()
        stored = self.store.insert(ticks)
        self.stats.stored += stored
        self.stats.duplicates += len(ticks) - stored
        PERSISTER_TICKS.inc(stored)
        PERSISTER_BATCH.observe(len(ticks))
        return stored


def default_consumer_name() -> str:
    """Stable across restarts on one host, so a restarted persister finds its own pending entries."""
    return f"persister@{socket.gethostname()}"
