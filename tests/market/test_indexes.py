from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.market.buckets import store_ticks
from apps.market.selectors import buckets_filter
from apps.market.ticks import Tick
from tests.market.mongo_plans import buckets_collection, explain_find, winning_stages

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


def test_the_migrations_create_only_the_bucket_indexes_history_and_retention_need(db: None) -> None:
    keys = {name: info["key"] for name, info in buckets_collection().index_information().items()}
    assert keys == {
        "_id_": [("_id", 1)],
        "tickbucket_symbol_start": [("symbol", 1), ("start", 1)],
        "tickbucket_end": [("end", 1)],
    }


moments = st.integers(-600, 3000).map(lambda seconds: START + timedelta(seconds=seconds))


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.sampled_from([*SYMBOLS, "ZZZ"]), at=moments, width=st.integers(1, 3600))
def test_history_queries_use_the_symbol_start_index(
    stored_history: None, symbol: str, at: datetime, width: int
) -> None:
    """Feature: trading-performance-optimization, Property 1: For any stock symbol or timestamp query, the database layer should complete the query within 50ms when proper indexes are used"""  # noqa: E501
    # The time itself is measured by bench/history.py; here: every query the history reads issue is an index scan.
    since = at - timedelta(seconds=width)
    for filter_ in [
        buckets_filter(symbol, since, at),  # a window's buckets
        buckets_filter(symbol, at, at + timedelta(milliseconds=1)),  # the keyset tie-break
        {"symbol": symbol, "start": {"$gte": since, "$lt": at}},  # the resume-point probes
        {"symbol": symbol, "start": {"$lt": at}},  # anything older at all?
    ]:
        stages = winning_stages(explain_find(filter_))
        assert ("IXSCAN", "tickbucket_symbol_start") in stages, stages
        assert "COLLSCAN" not in [stage for stage, _ in stages]


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(symbol=st.sampled_from(SYMBOLS), at=moments, width=st.integers(1, 600))
def test_a_history_window_examines_only_the_buckets_that_can_hold_it(
    stored_history: None, symbol: str, at: datetime, width: int
) -> None:
    """Feature: trading-performance-optimization, Property 4: For any set of database queries, 95% should complete within 100ms"""  # noqa: E501
    # Latency is measured by bench/history.py; the guarantee behind it is tested here: a window query's work is
    # bounded by the window (at most one bucket window either side), never by the symbol's whole history.
    since = at - timedelta(seconds=width)
    filter_ = buckets_filter(symbol, since, at)
    stats = explain_find(filter_, verbosity="executionStats")["executionStats"]
    per_window = settings.TICK_BUCKET_SECONDS // 2  # ticks every 2 s
    most = (width + 2 * settings.TICK_BUCKET_SECONDS) // 2 // per_window + 2
    assert stats["totalDocsExamined"] == buckets_collection().count_documents(filter_) <= most
