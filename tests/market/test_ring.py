import itertools
import json
import logging

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.metrics import RING_EVICTIONS
from apps.core.redis import redis_client
from apps.market.ring import RING_EVICTION_LOG_SECONDS, BoundedRing, EvictionLog, ring_key
from apps.market.selectors import recent_history
from apps.market.simulator import RedisTickSink
from tests.market.engine_fakes import numbered_ticks


@hypothesis_settings(max_examples=200)
@given(capacity=st.integers(1, 50), items=st.lists(st.integers(), max_size=300))
def test_a_bounded_ring_keeps_at_most_its_capacity(capacity: int, items: list[int]) -> None:
    """Feature: trading-performance-optimization, Property 21: For any symbol, the price history store should maintain at most 1000 records in memory"""  # noqa: E501
    # (Capacity scaled down; the bound is the same code for 1000.)
    ring: BoundedRing[int] = BoundedRing(capacity)
    for item in items:
        ring.append(item)
        assert len(ring) <= capacity
    assert len(ring) == min(capacity, len(items))


@hypothesis_settings(max_examples=200)
@given(capacity=st.integers(1, 50), items=st.lists(st.integers(), max_size=300))
def test_a_bounded_ring_is_a_circular_buffer_evicting_the_oldest_first(capacity: int, items: list[int]) -> None:
    """Feature: trading-performance-optimization, Property 24: For any real-time price data processing, circular buffers should be used for history storage"""  # noqa: E501
    ring: BoundedRing[int] = BoundedRing(capacity)
    evicted = [ring.append(item) for item in items]
    kept = items[-capacity:] if items else []
    assert list(ring) == kept
    assert [e for e in evicted if e is not None] == items[: max(0, len(items) - capacity)]
    assert ring.evictions == max(0, len(items) - capacity)
    assert ring.oldest() == (kept[0] if kept else None)


def test_a_ring_needs_a_positive_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BoundedRing(0)


@hypothesis_settings(max_examples=100, deadline=None)
@given(batches=st.lists(st.integers(1, 400), min_size=1, max_size=6))
def test_the_redis_ring_holds_the_newest_1000_points_of_each_symbol(batches: list[int]) -> None:
    """Feature: trading-performance-optimization, Property 21: For any symbol, the price history store should maintain at most 1000 records in memory"""  # noqa: E501
    client = redis_client()
    client.flushdb()
    before = RING_EVICTIONS._value.get()
    sink = RedisTickSink()
    ticks = numbered_ticks(sum(batches), symbols=["ONE"])
    start = 0
    for size in batches:
        sink.write(ticks[start : start + size])
        start += size
        assert client.llen(ring_key("ONE")) <= settings.PRICE_RING_SIZE
    stored = [json.loads(raw)["tick_id"] for raw in client.lrange(ring_key("ONE"), 0, -1)]
    newest_first = [tick_id for tick_id, _ in reversed(ticks)][: settings.PRICE_RING_SIZE]
    assert stored == newest_first
    assert RING_EVICTIONS._value.get() - before == max(0, len(ticks) - settings.PRICE_RING_SIZE)


def test_recent_history_reads_the_ring_oldest_first() -> None:
    ticks = numbered_ticks(5, symbols=["ONE"])
    RedisTickSink().write(ticks)
    assert [p["tick_id"] for p in recent_history("ONE")] == [tick_id for tick_id, _ in ticks]
    assert recent_history("NONE") == []


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@hypothesis_settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(1, 400), st.floats(0, 90)), min_size=1, max_size=8))
def test_an_overflowing_ring_evicts_the_oldest_and_logs_it_at_most_once_a_minute(
    steps: list[tuple[int, float]],
) -> None:
    """Circular buffer overflow: the oldest points go, and a rate-limited log line says how many (fake clock)."""
    client = redis_client()
    client.flushdb()
    now = [0.0]
    log = EvictionLog(interval=RING_EVICTION_LOG_SECONDS, clock=lambda: now[0])
    sink = RedisTickSink(eviction_log=log)
    lines = _Lines()
    ring_logger = logging.getLogger("apps.market.ring")
    ring_logger.addHandler(lines)
    previous_level, ring_logger.level = ring_logger.level, logging.INFO
    try:
        ticks = numbered_ticks(sum(size for size, _ in steps), symbols=["ONE"])
        start, logged_at, evicted_total = 0, [], 0
        for size, elapsed in steps:
            now[0] += elapsed
            before = len(lines.records)
            sink.write(ticks[start : start + size])
            evicted_total = max(0, start + size - settings.PRICE_RING_SIZE)
            start += size
            if len(lines.records) > before:
                logged_at.append(now[0])
    finally:
        ring_logger.removeHandler(lines)
        ring_logger.level = previous_level
    stored = [json.loads(raw)["tick_id"] for raw in client.lrange(ring_key("ONE"), 0, -1)]
    assert stored == [tick_id for tick_id, _ in reversed(ticks)][: settings.PRICE_RING_SIZE]  # the oldest went
    assert all(b - a >= RING_EVICTION_LOG_SECONDS for a, b in itertools.pairwise(logged_at))  # rate-limited
    counted = sum(record.args[0] for record in lines.records)  # type: ignore[index]
    assert counted + log._pending == evicted_total  # every eviction is in a line or in the next one
    assert (len(lines.records) > 0) == (evicted_total > 0)  # the first overflow is logged at once
