import bisect
from collections.abc import Sequence

import pytest
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pymongo.errors import ServerSelectionTimeoutError

from apps.core.redis import redis_client
from apps.market.models import PriceTick
from apps.market.persister import MongoTickStore, RedisTickSource, StreamEntry, TickPersister, WriteLimiter
from apps.market.stream import CONSUMER_GROUP, NumberedTick, stage_append, stream_key
from tests.market.engine_fakes import FakeClock, numbered_ticks


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
        self.ticks = numbered_ticks(len(arrivals))
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

    def insert(self, ticks: Sequence[NumberedTick]) -> int:
        self.write_times.append(self.clock())
        self.stored.extend(tick_id for tick_id, _ in ticks)
        return len(ticks)


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
    persister = TickPersister(source, store, writes_per_second=10, batch_max=batch_max, clock=clock, sleep=clock.sleep)
    while source.acknowledged < len(arrivals) and clock() < start + len(rates) + 120:
        persister.step()
    assert writes_in_any_second(store.write_times) <= 10
    assert store.stored == [tick_id for tick_id, _ in source.ticks]


class FlakyStore(RecordingStore):
    def __init__(self, clock: FakeClock, failures: int) -> None:
        super().__init__(clock)
        self.failures = failures

    def insert(self, ticks: Sequence[NumberedTick]) -> int:
        if self.failures:
            self.failures -= 1
            raise ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")
        return super().insert(ticks)


def test_an_unreachable_database_is_retried_with_exponential_backoff_keeping_the_batch() -> None:
    clock = FakeClock()
    source, store = ArrivingTicks(clock, [clock()] * 30), FlakyStore(clock, failures=4)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.sleep(seconds)

    persister = TickPersister(source, store, writes_per_second=10, batch_max=100, clock=clock, sleep=sleep)
    for _ in range(5):
        persister.step()
    assert [s for s in sleeps if s >= 0.5] == [0.5, 1.0, 2.0, 4.0]
    assert store.stored == [tick_id for tick_id, _ in source.ticks] and source.acknowledged == 30
    assert persister.stats.failures == 4


# --- Against the real stream and database -------------------------------------------------------------


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs in that persister."""


class CrashingStore(MongoTickStore):
    def __init__(self, crash_at: str | None) -> None:
        self.crash_at = crash_at

    def insert(self, ticks: Sequence[NumberedTick]) -> int:
        if self.crash_at == "before_insert":
            raise Killed
        if self.crash_at == "mid_insert":
            super().insert(ticks[: len(ticks) // 2])
            raise Killed
        stored = super().insert(ticks)
        if self.crash_at == "after_insert":
            raise Killed
        return stored


def append(ticks: Sequence[NumberedTick]) -> None:
    pipe = redis_client().pipeline()
    stage_append(pipe, ticks)
    pipe.execute()


def drain(crashes: list[str], *, batch_max: int) -> None:
    """Persist everything, restarting the persister after each simulated kill."""
    clock = FakeClock()
    plan = list(crashes)
    for _ in range(100):
        source = RedisTickSource(redis_client(), consumer="persister@test")
        source.BLOCK_MS = 5
        store = CrashingStore(plan.pop(0) if plan else None)
        persister = TickPersister(
            source, store, writes_per_second=10, batch_max=batch_max, clock=clock, sleep=clock.sleep
        )
        try:
            while persister.step() or redis_client().xlen(stream_key()):
                pass
            return
        except Killed:
            continue
    raise AssertionError("the persister never finished")


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(1, 200),
    crashes=st.lists(st.sampled_from(["before_insert", "mid_insert", "after_insert"]), max_size=3),
    batch_max=st.integers(25, 150),
)
def test_a_killed_persister_loses_nothing_and_stores_nothing_twice(
    count: int, crashes: list[str], batch_max: int
) -> None:
    """Feature: trading-performance-optimization, Property 36: For any throttled database write operation, no price updates should be lost"""  # noqa: E501
    redis_client().flushdb()
    collection = connection.get_collection(PriceTick._meta.db_table)
    collection.delete_many({})
    ticks = numbered_ticks(count)
    append(ticks)
    drain(crashes, batch_max=batch_max)
    assert collection.count_documents({}) == count
    assert sorted(collection.distinct("tick_id")) == sorted(tick_id for tick_id, _ in ticks)
    assert redis_client().xlen(stream_key()) == 0  # acknowledged entries are deleted: the stream stays bounded
    assert redis_client().xpending(stream_key(), CONSUMER_GROUP)["pending"] == 0


@pytest.mark.django_db
def test_stored_ticks_read_back_through_the_model_with_decimal_prices() -> None:
    ticks = numbered_ticks(3)
    assert MongoTickStore().insert(ticks) == 3
    assert MongoTickStore().insert(ticks) == 0  # a re-delivered batch stores nothing twice
    tick = PriceTick.objects.get(tick_id=ticks[1][0])
    assert str(tick.price) == "10.01" and tick.symbol == "BBB" and tick.volume == 1
    assert int(tick.recorded_at.timestamp() * 1000) == ticks[1][1].timestamp


@pytest.mark.django_db
def test_entries_another_persister_abandoned_are_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    append(numbered_ticks(5))
    dead = RedisTickSource(redis_client(), consumer="persister@dead-host")
    assert len(dead.read(10)) == 5  # delivered, never acknowledged
    monkeypatch.setattr("apps.market.persister.CLAIM_IDLE_MS", 0)
    heir = RedisTickSource(redis_client(), consumer="persister@other-host")
    claimed = heir.read(10)
    assert len(claimed) == 5 and all(entry.tick is not None for entry in claimed)
