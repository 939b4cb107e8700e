"""Memory pressure: at the 85 % memory threshold every process sheds what it can rebuild, then collects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core import pressure
from apps.core.cache import default_cache
from apps.core.metrics import MEMORY_SHEDS
from apps.core.pressure import MemoryPressureWatch, register_shedder, shed_memory, unregister_shedder
from apps.market.feed.hub import MarketHub
from tests.market.feed_fakes import BlockedConnection, FakeSource, encoded_update

THRESHOLD = settings.ALERT_THRESHOLDS["memory_percent"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted_shedder() -> Iterator[list[int]]:
    calls: list[int] = []
    register_shedder("test", lambda: calls.append(1) or 7)
    yield calls
    unregister_shedder("test")


def test_the_threshold_is_the_memory_alerts_85_percent() -> None:
    assert THRESHOLD == 85.0


@hypothesis_settings(max_examples=200)
@given(percent=st.floats(min_value=0, max_value=100))
def test_a_process_sheds_exactly_when_memory_use_reaches_the_alert_threshold(percent: float) -> None:
    """Feature: trading-performance-optimization, Property 25: For any system state where memory usage exceeds 85%,
    alerts should be generated"""
    calls: list[int] = []
    register_shedder("property", lambda: calls.append(1) or 1)
    try:
        watch = MemoryPressureWatch(threshold_percent=THRESHOLD, role="test", clock=Clock())
        before = MEMORY_SHEDS.labels(role="test")._value.get()
        shed = watch.observe(percent)
        assert (shed is not None) == (percent >= 85.0) == bool(calls)
        assert MEMORY_SHEDS.labels(role="test")._value.get() == before + len(calls)
    finally:
        unregister_shedder("property")


def test_sheds_at_most_once_per_cooldown_while_memory_stays_high(counted_shedder: list[int]) -> None:
    clock = Clock()
    watch = MemoryPressureWatch(threshold_percent=THRESHOLD, role="test", cooldown=60, clock=clock)
    assert watch.observe(90.0) is not None
    clock.now += 59
    assert watch.observe(95.0) is None
    clock.now += 1
    shed = watch.observe(90.0)
    assert shed is not None and shed["test"] == 7 and "gc_objects" in shed
    assert counted_shedder == [1, 1]


def test_a_failing_shedder_does_not_stop_the_others(counted_shedder: list[int]) -> None:
    def broken() -> int:
        raise RuntimeError("cannot shed")

    register_shedder("broken", broken)
    try:
        shed = shed_memory()
    finally:
        unregister_shedder("broken")
    assert shed["test"] == 7 and "broken" not in shed


def test_the_l1_cache_is_emptied(db: None) -> None:
    cache = default_cache()
    cache.local.set("warm:key", b"value", expires_at=cache.clock() + 30)
    assert "l1_cache" in pressure._shedders
    assert shed_memory()["l1_cache"] >= 1
    assert cache.local.get("warm:key") is None


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0)


def test_the_hub_drops_the_pending_updates_of_slow_connections_and_keeps_serving() -> None:
    async def main() -> None:
        hub = MarketHub(FakeSource())
        slow = BlockedConnection()
        await hub.watch(slow, ["AAA", "BBB"])
        hub.deliver("AAA", encoded_update("AAA", 1.0))
        hub.flush()  # its send is now in flight, and stays there
        await asyncio.sleep(0)
        hub.deliver("AAA", encoded_update("AAA", 2.0))
        hub.deliver("BBB", encoded_update("BBB", 2.0))
        hub.flush()
        assert hub.pending_updates() == 2
        assert hub.shed() == 2 and hub.pending_updates() == 0
        slow.release()
        await until(lambda: len(slow.frames) == 1 and not hub._watchers[slow].sending)
        hub.deliver("BBB", encoded_update("BBB", 3.0))  # the next tick brings the price back
        hub.flush()
        await until(lambda: len(slow.frames) == 3)
        assert [u["price"] for u in slow.updates()] == [1.0, 3.0]
        assert slow.decoded()[1]["type"] == "notice"  # and it is told that two updates were dropped
        assert " 2 update(s)" in slow.decoded()[1]["message"]

    asyncio.run(main())
