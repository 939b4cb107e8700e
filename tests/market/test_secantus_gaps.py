"""Pins of SecantusDB gaps that apps/market/selectors.py works around.

Each test asserts the gap still exists. When one fails, the embedded database
has closed the gap: simplify the workaround it names and delete the test.
"""

from datetime import UTC, datetime, timedelta

import pytest

from apps.market.buckets import store_ticks
from apps.market.models import TickBucket
from apps.market.selectors import buckets_filter
from tests.market.engine_fakes import numbered_ticks
from tests.market.mongo_plans import explain_find, winning_stages

NOW = datetime.now(UTC)


@pytest.fixture
def some_ticks(db: None) -> None:
    store_ticks(numbered_ticks(50, start_ms=int((NOW - timedelta(minutes=1)).timestamp() * 1000)))


def test_gap_the_planner_sorts_in_memory_instead_of_reading_the_index_in_order(some_ticks: None) -> None:
    """Workaround: history reads are bounded time windows (stored_ticks_before), latest points come from the ring."""
    stages = winning_stages(explain_find({"symbol": "AAA"}, sort=[("start", -1)], limit=100))
    assert stages[0][0] == "SORT"
    assert ("IXSCAN", "tickbucket_symbol_start") in stages


def test_gap_orm_filters_scan_the_whole_collection(some_ticks: None) -> None:
    """Workaround: stored-history reads use raw pymongo filters (selectors.buckets_filter)."""
    queryset = TickBucket.objects.filter(symbol="AAA", start__gte=NOW - timedelta(minutes=5), start__lt=NOW)
    assert "COLLSCAN" in queryset.explain()
    raw = winning_stages(explain_find(buckets_filter("AAA", NOW - timedelta(minutes=5), NOW)))
    assert ("IXSCAN", "tickbucket_symbol_start") in raw


def test_gap_a_top_level_or_scans_the_whole_collection(some_ticks: None) -> None:
    """Workaround: the keyset tie-break (same millisecond, smaller tick id) is applied to the points of the first
    window's buckets in Python (selectors.stored_ticks_before), never as an `$or` in the filter."""
    filter_ = {
        "symbol": "AAA",
        "start": {"$lte": NOW},
        "$or": [{"start": {"$lt": NOW}}, {"tick_ids": {"$lt": "run-0000000010"}}],
    }
    assert ("COLLSCAN", None) in winning_stages(explain_find(filter_, limit=10))
