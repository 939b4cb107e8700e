from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.market.buckets import store_ticks
from apps.market.selectors import NEWEST_FIRST, ties_filter, window_filter
from apps.market.ticks import Tick
from tests.market.mongo_plans import explain_find, ticks_collection, winning_stages

SYMBOLS = ["AAA", "BBB", "CCC"]
START = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
TICKS_PER_SYMBOL = 1200  # one every 2 s over 40 minutes


@pytest.fixture
def stored_history(db: None) -> None:
    ticks = [
        (
            f"idx-{symbol}-{n:06d}",
            Tick(symbol, 10.0, 10.0, n, int((START + timedelta(seconds=2 * n)).timestamp() * 1000)),
        )
        for n in range(TICKS_PER_SYMBOL)
        for symbol in SYMBOLS
    ]
    store_ticks(ticks)


def test_the_migrations_create_the_history_indexes(db: None) -> None:
    keys = {name: info["key"] for name, info in ticks_collection().index_information().items()}
    assert keys["pricetick_symbol_recorded"] == [("symbol", 1), ("recorded_at", -1)]
    assert keys["pricetick_recorded"] == [("recorded_at", -1)]
    assert any(
        info.get("unique") and info["key"] == [("tick_id", 1)]
        for info in ticks_collection().index_information().values()
    )


moments = st.integers(-600, 3000).map(lambda seconds: START + timedelta(seconds=seconds))


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.sampled_from([*SYMBOLS, "ZZZ"]), at=moments, width=st.integers(1, 3600))
def test_history_queries_use_the_symbol_time_index(stored_history: None, symbol: str, at: datetime, width: int) -> None:
    """Feature: trading-performance-optimization, Property 1: For any stock symbol or timestamp query, the database layer should complete the query within 50ms when proper indexes are used"""  # noqa: E501
    # The time itself is measured by bench/history.py; here: every query the history reads issue is an index scan.
    for filter_, sort, limit in [
        (window_filter(symbol, at - timedelta(seconds=width), at), NEWEST_FIRST, 100),
        (ties_filter(symbol, at), None, 0),
        (window_filter(symbol, at - timedelta(days=365), at), None, 1),  # the resume-point probes
    ]:
        stages = winning_stages(explain_find(filter_, sort=sort, limit=limit))
        assert ("IXSCAN", "pricetick_symbol_recorded") in stages, stages
        assert "COLLSCAN" not in [stage for stage, _ in stages]


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.sampled_from(SYMBOLS), at=moments, width=st.integers(1, 600))
def test_a_history_window_examines_only_the_ticks_inside_it(
    stored_history: None, symbol: str, at: datetime, width: int
) -> None:
    """Feature: trading-performance-optimization, Property 4: For any set of database queries, 95% should complete within 100ms"""  # noqa: E501
    # Latency is measured by bench/history.py; the guarantee behind it is tested here: a window query's work is
    # bounded by the window (what it returns), never by the symbol's whole history.
    since = at - timedelta(seconds=width)
    stats = explain_find(window_filter(symbol, since, at), sort=NEWEST_FIRST, limit=100, verbosity="executionStats")[
        "executionStats"
    ]
    inside = ticks_collection().count_documents(window_filter(symbol, since, at))
    assert stats["totalDocsExamined"] <= inside < TICKS_PER_SYMBOL or inside == 0
