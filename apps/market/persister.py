"""The write-behind persister: tick stream -> tick buckets in MongoDB, throttled, lossless, idempotent.

- Reads the stream through a consumer group once per poll interval; a
  restarted persister first re-reads its own pending entries (delivered,
  never acknowledged), and claims entries another consumer left pending for
  a minute.
- Holds each symbol's ticks in an open bucket (apps/market/buckets.py) and
  stores the buckets that closed in one bulk insert, at most
  `writes_per_second` in any one-second window (Property 7).
- Acknowledges (and deletes) entries only after their bucket is stored; a
  re-delivered bucket is recognised by its id and only what it lacks is merged
  (Property 36: kill -9 at any moment loses nothing and stores nothing twice).
  Ticks held in open buckets stay pending in the stream, so the stream length
  is still the backlog; the Redis ring covers them for history reads.
- MongoDB or Redis unreachable: the batch is kept, retried with exponential
  backoff; the backlog waits in the stream (the simulator slows down, Property 9).
"""

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from django.conf import settings
from pymongo.errors import PyMongoError

from apps.core.backoff import backoff_delay
from apps.core.clock import now_ms as clock_now_ms
from apps.core.metrics import (
    PERSISTER_BACKLOG,
    PERSISTER_BATCH,
    PERSISTER_LAG,
    PERSISTER_TICKS,
    PERSISTER_WRITES,
)
from apps.market.buckets import Bucket, BucketAssembler
from apps.market.ring import BoundedRing
from apps.market.stream import CONSUMER_GROUP, NumberedTick, decode_entry, ensure_consumer_group, stream_key

logger = logging.getLogger(__name__)

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
    def insert(self, buckets: Sequence[Bucket]) -> int:
        """Store the buckets in one write; return how many ticks were new (the rest were already stored)."""


class RedisTickSource:
    """The tick stream through the persisters' consumer group."""

    BLOCK_MS = 1000

    def __init__(self, client: redis.Redis, *, consumer: str) -> None:
        self.client = client
        self.consumer = consumer
        self._own_pending_from: bytes | None = b"0"  # None once our pending entries are all re-read
        self._next_claim = 0.0
        ensure_consumer_group(client)

    def read(self, count: int) -> list[StreamEntry]:
        if self._own_pending_from is not None:  # after a crash: what we were given and never acknowledged
            entries = self._read_group(self._own_pending_from.decode(), count, block=None)
            if entries:
                self._own_pending_from = entries[-1].entry_id  # held, not acknowledged yet: read past them
                return entries
            self._own_pending_from = None
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


@dataclass
class PersisterStats:
    writes: int = 0
    stored: int = 0
    duplicates: int = 0
    failures: int = 0
    backlog: int = 0


def default_assembler() -> BucketAssembler:
    return BucketAssembler(
        window_ms=settings.TICK_BUCKET_SECONDS * 1000,
        max_points=settings.TICK_BUCKET_MAX_POINTS,
        hold_max=max(1, settings.TICK_BACKLOG_LIMIT // 2),  # never let held ticks alone stall the simulator
    )


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
        assembler: BucketAssembler | None = None,
        poll_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now_ms: Callable[[], int] = clock_now_ms,
    ) -> None:
        self.source, self.store = source, store
        self.limiter = WriteLimiter(writes_per_second, clock=clock)
        self.assembler = assembler or default_assembler()
        self.batch_max, self.poll_seconds = batch_max, poll_seconds
        self.clock, self.sleep, self.now_ms = clock, sleep, now_ms
        self.stats = PersisterStats()
        self._held: set[bytes] = set()  # entries read and not yet acknowledged (a re-claimed one is skipped)
        self._closed: list[Bucket] = []  # buckets to store, then acknowledge
        self._gone: list[bytes] = []  # entries whose data is gone: acknowledge only
        self._next_read = float("-inf")
        self._failures_in_a_row = 0  # the retry delay doubles with each (apps/core/backoff.py)

    def step(self) -> int:
        """One read-(store-acknowledge) cycle; return the ticks stored (0 when nothing closed or failing)."""
        try:
            if not self._closed and not self._gone:
                self._read()
            if not self._closed and not self._gone:
                return 0
            stored = self._store(self._closed) if self._closed else 0
            acknowledged = [entry_id for bucket in self._closed for entry_id in bucket.entry_ids] + self._gone
            self.stats.backlog = self.source.acknowledge(acknowledged)
        except (PyMongoError, redis.RedisError) as error:
            self.stats.failures += 1
            kept = sum(len(bucket.ticks) for bucket in self._closed)
            delay = backoff_delay(self._failures_in_a_row, base=self.BACKOFF_START, maximum=self.BACKOFF_MAX)
            self._failures_in_a_row += 1
            logger.warning("persister: %s; %s ticks kept, retrying in %.1f s", error, kept, delay)
            self.sleep(delay)
            return 0
        self._failures_in_a_row = 0
        PERSISTER_BACKLOG.set(self.stats.backlog)
        ticks = [numbered for bucket in self._closed for numbered in bucket.ticks]
        if ticks:
            PERSISTER_LAG.set(max(0.0, (self.now_ms() - min(t.timestamp for _, t in ticks)) / 1000))
        self._held.difference_update(acknowledged)
        self._closed, self._gone = [], []
        return stored

    def flush(self) -> int:
        """Store every bucket still open (a clean stop); what fails stays pending in the stream for the next run."""
        self._closed += self.assembler.close_all()
        return self.step() if self._closed or self._gone else 0

    def _read(self) -> None:
        """Read what arrived (at most once per poll interval unless catching up) and close what is due."""
        wait = self._next_read - self.clock()
        if wait > 0:
            self.sleep(wait)
        entries = self.source.read(self.batch_max)
        self._next_read = self.clock() + (0.0 if len(entries) >= self.batch_max else self.poll_seconds)
        for entry in entries:
            if entry.entry_id in self._held:
                continue
            self._held.add(entry.entry_id)
            if entry.tick is None:
                self._gone.append(entry.entry_id)
            else:
                self._closed += self.assembler.add(entry.entry_id, entry.tick)
        self._closed += self.assembler.due(now_ms=self.now_ms())

    def _store(self, buckets: list[Bucket]) -> int:
        wait = self.limiter.wait_time()
        if wait > 0:
            self.sleep(wait)
        self.limiter.record()  # a failed attempt is a write operation too
        self.stats.writes += 1
        PERSISTER_WRITES.inc()
        ticks = sum(len(bucket.ticks) for bucket in buckets)
        stored = self.store.insert(buckets)
        self.stats.stored += stored
        self.stats.duplicates += ticks - stored
        PERSISTER_TICKS.inc(stored)
        PERSISTER_BATCH.observe(ticks)
        return stored


def default_consumer_name() -> str:
    """Stable across restarts on one host, so a restarted persister finds its own pending entries."""
    return f"persister@{socket.gethostname()}"
