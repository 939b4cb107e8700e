import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.core.redis import redis_client
from apps.market import selectors
from apps.market.buckets import store_ticks
from apps.market.models import TickBucket
from apps.market.selectors import HistoryCursor, latest_stored_tick, recent_history, symbol_quote, tick_history
from apps.market.simulator import RedisTickSink
from apps.market.stream import NumberedTick
from apps.market.ticks import Tick

GAPS_MS = st.sampled_from([0, 0, 1, 7, 900, 45_000, 400_000, 5_000_000])  # ties, ticks, pauses, hours
# ... and bucket edges (30 s windows), and days (past the retention horizon of the test below)
WALK_GAPS_MS = st.sampled_from([0, 1, 7, 900, 29_999, 30_000, 45_000, 400_000, 5_000_000, 200_000_000])


def ticks_at(timestamps: list[int], *, symbol: str = "HIST", run: str = "r") -> list[NumberedTick]:
    return [
        (f"{run}-{n:06d}", Tick(symbol, 10 + n / 100, 10.0, n, timestamp)) for n, timestamp in enumerate(timestamps)
    ]


def timeline(gaps: list[int], *, end_ms: int) -> list[int]:
    offsets = list(itertools.accumulate(gaps))
    return [end_ms - offsets[-1] + offset for offset in offsets]


def newest_first(ticks: list[NumberedTick]) -> list[str]:
    return [i for i, _ in sorted(ticks, key=lambda pair: (pair[1].timestamp, pair[0]), reverse=True)]


def page_through(limits: Any, arriving: list[list[NumberedTick]], backlog: list[NumberedTick]) -> list[str]:
    """Every page until the end; between pages, new ticks arrive in the ring and the persister catches up.

    The persister stores in stream order, so when an arrival is stored, so is the older backlog.
    """
    seen: list[str] = []
    before = None
    for page_number in itertools.count():
        page = tick_history(symbol="HIST", limit=next(limits), before=before)
        seen += [point["tick_id"] for point in page.points]
        if page.next_cursor is None:
            return seen
        before = page.next_cursor
        if page_number < len(arriving):
            RedisTickSink().write(arriving[page_number])
            store_ticks(backlog + arriving[page_number])
    raise AssertionError("unreachable")


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gaps=st.lists(GAPS_MS, min_size=1, max_size=80),
    unstored=st.integers(0, 8),
    ring_size=st.integers(5, 40),
    limits=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    arrivals=st.lists(st.integers(1, 5), max_size=4),
)
def test_history_pages_never_repeat_or_skip_while_ticks_arrive(
    settings: SettingsWrapper, gaps: list[int], unstored: int, ring_size: int, limits: list[int], arrivals: list[int]
) -> None:
    """Feature: trading-performance-optimization, Property 37: For any paginated query, the ordering should remain consistent across all page requests"""  # noqa: E501
    settings.PRICE_RING_SIZE = ring_size
    redis_client().flushdb()
    TickBucket.collection().delete_many({})
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    ticks = ticks_at(timeline(gaps, end_ms=now_ms - 60_000))
    unstored = min(unstored, ring_size)  # the persister lags by less than the ring holds
    store_ticks(ticks[: len(ticks) - unstored])
    RedisTickSink().write(ticks)
    later = [ticks_at([now_ms - 30_000 + k] * count, run=f"new{k}") for k, count in enumerate(arrivals)]
    assert page_through(itertools.cycle(limits), later, ticks) == newest_first(ticks)


@pytest.mark.django_db
@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gaps=st.lists(WALK_GAPS_MS, max_size=60),
    position=st.integers(0, 60),
    limit=st.integers(1, 50),
    per_ms=st.one_of(st.none(), st.floats(1e-7, 5.0)),
)
def test_a_stored_page_is_exactly_the_newest_points_before_its_cursor_across_buckets_and_gaps(
    settings: SettingsWrapper, gaps: list[int], position: int, limit: int, per_ms: float | None
) -> None:
    """Feature: trading-performance-optimization, Property 37: For any paginated query, the ordering should remain consistent across all page requests"""  # noqa: E501
    # Any history (ties, bucket edges, gaps of minutes to days, history past the retention horizon the cleanup
    # left behind), any cursor, any density hint: the stored walk returns exactly the next `limit` points.
    settings.PRICE_HISTORY_RETENTION_DAYS = 1
    TickBucket.collection().delete_many({})
    ticks = ticks_at(timeline([0, *gaps], end_ms=int(datetime.now(UTC).timestamp() * 1000) - 60_000))
    store_ticks(ticks)
    order = sorted(ticks, key=lambda pair: (pair[1].timestamp, pair[0]), reverse=True)
    ids = [tick_id for tick_id, _ in order]
    if position >= len(order):
        before, expected = None, ids[:limit]
    else:
        before = HistoryCursor(order[position][1].timestamp, order[position][0])
        expected = ids[position + 1 : position + 1 + limit]
    found = selectors.stored_ticks_before(symbol="HIST", before=before, limit=limit, per_ms=per_ms)
    assert [point["tick_id"] for point in found] == expected


@pytest.mark.django_db
def test_the_latest_page_comes_from_the_ring_without_a_database_query(django_assert_max_num_queries: Any) -> None:
    ticks = ticks_at(timeline([1] * 30, end_ms=int(datetime.now(UTC).timestamp() * 1000)))
    RedisTickSink().write(ticks)
    calls = []
    original = selectors.stored_ticks_before
    selectors.stored_ticks_before = lambda **kwargs: calls.append(kwargs) or original(**kwargs)  # type: ignore[assignment]
    try:
        page = tick_history(symbol="HIST", limit=10)
    finally:
        selectors.stored_ticks_before = original  # type: ignore[assignment]
    assert [p["tick_id"] for p in page.points] == newest_first(ticks)[:10] and calls == []


@pytest.mark.django_db
def test_history_is_served_from_mongodb_when_redis_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    ticks = ticks_at(timeline([1000] * 20, end_ms=now_ms))
    store_ticks(ticks)

    def broken(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(selectors, "_ring_points", broken)
    monkeypatch.setattr(selectors, "_ring_page", broken)
    monkeypatch.setattr(selectors, "latest_quotes", broken)
    page = tick_history(symbol="HIST", limit=5)
    assert [p["tick_id"] for p in page.points] == newest_first(ticks)[:5]
    assert [p["tick_id"] for p in recent_history("HIST")] == newest_first(ticks)[::-1]
    quote = symbol_quote("HIST")
    assert quote is not None and quote["price"] == ticks[-1][1].price and quote["previous_close"] == 10.0


@pytest.mark.django_db
def test_the_latest_stored_tick_is_found_in_widening_windows() -> None:
    old = int((datetime.now(UTC) - timedelta(days=3)).timestamp() * 1000)
    store_ticks(ticks_at([old, old + 5]))
    tick = latest_stored_tick("HIST")
    assert tick is not None and tick.timestamp == old + 5
    assert latest_stored_tick("NONE") is None


@given(timestamp=st.integers(0, 2**45), tick_id=st.text(min_size=1, max_size=64).filter(str.isprintable))
@hypothesis_settings(max_examples=200)
def test_a_cursor_survives_encoding(timestamp: int, tick_id: str) -> None:
    cursor = HistoryCursor(timestamp, tick_id)
    assert HistoryCursor.decode(cursor.encode()) == cursor


@pytest.mark.parametrize("text", ["", "!!!", "bm90LWEtY3Vyc29y", "MTIzOg", "YWJjOmRlZg"])
def test_a_foreign_cursor_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a history cursor"):
        HistoryCursor.decode(text)
