import bisect
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pymongo.errors import ServerSelectionTimeoutError

from apps.core.redis import redis_client
from apps.market.buckets import Bucket, BucketAssembler, MongoBucketStore, document_ticks, store_ticks
from apps.market.models import TickBucket
from apps.market.persister import RedisTickSource, StreamEntry, TickPersister, WriteLimiter
from apps.market.stream import CONSUMER_GROUP, NumberedTick, stage_append, stream_key
from apps.market.ticks import Tick
from tests.market.engine_fakes import FakeClock, numbered_ticks

START_MS = 1_700_000_000_000


def writes_in_any_second(times: Sequence[float]) -> int:
    """The most writes inside any half-open one-second window [t, t + 1)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


@hypothesis_settings(max_examples=300)
@given(gaps=st.lists(st.floats(0, 0.5), max_size=200), per_second=st.integers(1, 10))
def test_the_write_limiter_allows_at_most_n_writes_in_any_second(gaps: list[float], per_second: int) -> None:
    """Feature: trading-performance-optimization, Property 7: For any time period, the real-time service should not exceed 10 database write operations per second"""  # noqa: E501
    clock = FakeClock()
    limiter = WriteLimiter(per_second, clock=clock)
    times = []
    for gap in gaps:
        clock.sleep(gap)
        clock.sleep(limiter.wait_time())
        limiter.record()
        times.append(clock())
    assert writes_in_any_second(times) <= per_second


class ArrivingTicks:
    """A stream where ticks arrive on the fake clock at given times; read blocks (advances time) when empty."""

    def __init__(self, clock: FakeClock, arrivals: list[float]) -> None:
        self.clock, self.arrivals = clock, arrivals
        self.ticks = [
            (tick_id, Tick(tick.symbol, tick.price, tick.previous_close, tick.volume, round(at * 1000)))
            for (tick_id, tick), at in zip(numbered_ticks(len(arrivals)), arrivals, strict=True)
        ]
        self.read_upto = 0
        self.acknowledged = 0

    def read(self, count: int) -> list[StreamEntry]:
        available = bisect.bisect_right(self.arrivals, self.clock())
        if available == self.read_upto:
            following = self.arrivals[available] if available < len(self.arrivals) else self.clock() + 1
            self.clock.sleep(min(1.0, following - self.clock()))
            return []
        upto = min(available, self.read_upto + count)
        entries = [StreamEntry(str(n).encode(), self.ticks[n]) for n in range(self.read_upto, upto)]
        self.read_upto = upto
        return entries

    def acknowledge(self, entry_ids: Sequence[bytes]) -> int:
        self.acknowledged += len(entry_ids)
        return len(self.arrivals) - self.acknowledged


class RecordingStore:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.write_times: list[float] = []
        self.stored: list[str] = []

    def insert(self, buckets: Sequence[Bucket]) -> int:
        self.write_times.append(self.clock())
        self.stored.extend(tick_id for bucket in buckets for tick_id, _ in bucket.ticks)
        return sum(len(bucket.ticks) for bucket in buckets)


def on_clock(clock: FakeClock, **kwargs: object) -> dict[str, object]:
    """Persister keywords driving every timer (limiter, poll, bucket windows) from one fake clock."""
    return {"clock": clock, "sleep": clock.sleep, "now_ms": lambda: round(clock() * 1000), **kwargs}


@hypothesis_settings(max_examples=100, deadline=None)
@given(rates=st.lists(st.integers(0, 3000), min_size=1, max_size=6), batch_max=st.integers(50, 5000))
def test_the_persister_never_exceeds_ten_writes_per_second_and_stores_every_tick(
    rates: list[int], batch_max: int
) -> None:
    """Feature: trading-performance-optimization, Property 7: For any time period, the real-time service should not exceed 10 database write operations per second"""  # noqa: E501
    clock = FakeClock()
    start = clock()
    arrivals = [start + second + k / rate for second, rate in enumerate(rates) for k in range(rate)]
    source, store = ArrivingTicks(clock, arrivals), RecordingStore(clock)
    persister = TickPersister(source, store, writes_per_second=10, batch_max=batch_max, **on_clock(clock))  # type: ignore[arg-type]
    while source.acknowledged < len(arrivals) and clock() < start + len(rates) + 120:
        persister.step()
    assert writes_in_any_second(store.write_times) <= 10
    assert sorted(store.stored) == [tick_id for tick_id, _ in source.ticks]


class FlakyStore(RecordingStore):
    def __init__(self, clock: FakeClock, failures: int) -> None:
        super().__init__(clock)
        self.failures = failures

    def insert(self, buckets: Sequence[Bucket]) -> int:
        if self.failures:
            self.failures -= 1
            raise ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")
        return super().insert(buckets)


def test_an_unreachable_database_is_retried_with_exponential_backoff_keeping_the_batch() -> None:
    clock = FakeClock()
    source, store = ArrivingTicks(clock, [clock()] * 30), FlakyStore(clock, failures=4)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.sleep(seconds)

    persister = TickPersister(
        source, store, writes_per_second=10, batch_max=100, clock=clock, sleep=sleep, now_ms=lambda: 10**15
    )
    for _ in range(5):
        persister.step()
    assert [s for s in sleeps if s >= 0.5] == [0.5, 1.0, 2.0, 4.0]
    assert sorted(store.stored) == [tick_id for tick_id, _ in source.ticks] and source.acknowledged == 30
    assert persister.stats.failures == 4


# --- Against the real stream and database -------------------------------------------------------------


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs in that persister."""


class CrashingStore(MongoBucketStore):
    def __init__(self, crash_at: str | None) -> None:
        super().__init__()
        self.crash_at = crash_at

    def insert(self, buckets: Sequence[Bucket]) -> int:
        if self.crash_at == "before_insert":
            raise Killed
        if self.crash_at == "mid_insert":
            super().insert(buckets[: len(buckets) // 2])
            raise Killed
        stored = super().insert(buckets)
        if self.crash_at == "after_insert":
            raise Killed
        return stored


def append(ticks: Sequence[NumberedTick]) -> None:
    pipe = redis_client().pipeline()
    stage_append(pipe, ticks)
    pipe.execute()


WINDOW_MS, MAX_POINTS = 30_000, 40


def drain(crashes: list[str], batch_sizes: list[int], *, last_ms: int) -> None:
    """Persist everything, restarting the persister (a new batch size each time) after each simulated kill.

    Time runs on a fake clock from the first tick, five poll seconds per read, so buckets close as the
    ticks' windows end, fill up, or the held ticks reach the bound.
    """
    clock = FakeClock()
    plan, sizes = list(crashes), list(batch_sizes)
    now_ms = lambda: START_MS + round((clock() - 1000.0) * 1000)  # noqa: E731
    for _ in range(100):
        source = RedisTickSource(redis_client(), consumer="persister@test")
        source.BLOCK_MS = 1
        store = CrashingStore(plan.pop(0) if plan else None)
        assembler = BucketAssembler(window_ms=WINDOW_MS, max_points=MAX_POINTS, hold_max=150)
        batch_max = sizes.pop(0) if sizes else 50
        persister = TickPersister(
            source, store, writes_per_second=10, batch_max=batch_max, assembler=assembler,
            poll_seconds=5.0, clock=clock, sleep=clock.sleep, now_ms=now_ms,
        )  # fmt: skip
        try:
            while redis_client().xlen(stream_key()):
                persister.step()
                assert now_ms() < last_ms + 10 * WINDOW_MS, "the persister never finished"
            return
        except Killed:
            continue
    raise AssertionError("the persister kept crashing")


tick_streams = st.lists(
    st.tuples(st.integers(0, 20_000), st.sampled_from(["AAA", "BBB", "CCC", "DDD"])), min_size=1, max_size=150
)


def stream_of(steps: list[tuple[int, str]]) -> list[NumberedTick]:
    """Ticks in stream order: each step waits 0-20 s (often 0: several ticks in one millisecond) then ticks."""
    ticks, at = [], START_MS
    for n, (gap, symbol) in enumerate(steps):
        at += gap if gap > 15_000 else gap % 50  # mostly dense, sometimes a jump across bucket windows
        ticks.append((f"run-{n:06d}", Tick(symbol, 10 + n / 100, 10.0, n, at)))
    return ticks


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=tick_streams,
    crashes=st.lists(st.sampled_from(["before_insert", "mid_insert", "after_insert"]), max_size=4),
    batch_sizes=st.lists(st.integers(1, 120), max_size=5),
)
def test_a_killed_persister_stores_each_tick_exactly_once_in_order_within_bucket_bounds(
    steps: list[tuple[int, str]], crashes: list[str], batch_sizes: list[int]
) -> None:
    """Feature: trading-performance-optimization, Property 36: For any throttled database write operation, no price updates should be lost"""  # noqa: E501
    redis_client().flushdb()
    collection = TickBucket.collection()
    collection.delete_many({})
    ticks = stream_of(steps)
    append(ticks)
    drain(crashes, batch_sizes, last_ms=ticks[-1][1].timestamp)
    documents = list(collection.find())
    stored = [numbered for document in documents for numbered in document_ticks(document)]
    assert Counter(tick_id for tick_id, _ in stored) == Counter(tick_id for tick_id, _ in ticks)  # once each
    assert sorted(stored) == sorted(ticks)  # every field as sent
    for document in documents:
        keys = [(at, tick_id) for tick_id, at in zip(document["tick_ids"], document["times"], strict=True)]
        assert keys == sorted(keys) and document["count"] == len(keys)  # in (time, tick id) order
        assert len({at // WINDOW_MS for at, _ in keys}) == 1  # within one bucket window
        assert {tick.symbol for _, tick in document_ticks(document)} == {document["symbol"]}
    windows = [(d["symbol"], min(d["times"]) // WINDOW_MS) for d in documents]
    assert len(windows) == len(set(windows))  # one document per symbol and window, however batches fell
    assert redis_client().xlen(stream_key()) == 0  # acknowledged entries are deleted: the stream stays bounded
    assert redis_client().xpending(stream_key(), CONSUMER_GROUP)["pending"] == 0


@pytest.mark.django_db
def test_stored_ticks_read_back_from_their_bucket_exactly_as_sent() -> None:
    ticks = numbered_ticks(3)
    assert store_ticks(ticks) == 3
    assert store_ticks(ticks) == 0  # a re-delivered bucket stores nothing twice
    bucket = TickBucket.objects.get(symbol="BBB")
    assert bucket.count == 1 and bucket.prices == [10.01] and bucket.times == [ticks[1][1].timestamp]
    assert TickBucket.objects.count() == 3


@pytest.mark.django_db
def test_entries_another_persister_abandoned_are_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    append(numbered_ticks(5))
    dead = RedisTickSource(redis_client(), consumer="persister@dead-host")
    assert len(dead.read(10)) == 5  # delivered, never acknowledged
    monkeypatch.setattr("apps.market.persister.CLAIM_IDLE_MS", 0)
    heir = RedisTickSource(redis_client(), consumer="persister@other-host")
    claimed = heir.read(10)
    assert len(claimed) == 5 and all(entry.tick is not None for entry in claimed)
