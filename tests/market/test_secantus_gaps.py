"""Pins of SecantusDB gaps that apps/market/selectors.py works around.

Each test asserts the gap still exists. When one fails, the embedded database
has closed the gap: simplify the workaround it names and delete the test.
"""

from datetime import UTC, datetime, timedelta

import pytest

from apps.market.models import PriceTick
from apps.market.buckets import store_ticks
from apps.market.selectors import NEWEST_FIRST, ties_filter, window_filter
from tests.market.engine_fakes import numbered_ticks
from tests.market.mongo_plans import explain_find, winning_stages

NOW = datetime.now(UTC)


@pytest.fixture
def some_ticks(db: None) -> None:
    store_ticks(numbered_ticks(50, start_ms=int((NOW - timedelta(minutes=1)).timestamp() * 1000)))


def test_gap_the_planner_sorts_in_memory_instead_of_reading_the_index_in_order(some_ticks: None) -> None:
    """Workaround: history reads are bounded time windows (stored_ticks_before), latest points come from the ring."""
    stages = winning_stages(explain_find({"symbol": "AAA"}, sort=[("recorded_at", -1)], limit=100))
    assert stages[0][0] == "SORT"
    assert ("IXSCAN", "pricetick_symbol_recorded") in stages


def test_gap_orm_filters_scan_the_whole_collection(some_ticks: None) -> None:
    """Workaround: stored-history reads use raw pymongo filters (selectors.window_filter and friends)."""
    queryset = PriceTick.objects.filter(symbol="AAA", recorded_at__gte=NOW - timedelta(minutes=5), recorded_at__lt=NOW)
    assert "COLLSCAN" in queryset.explain()
    raw = winning_stages(explain_find(window_filter("AAA", NOW - timedelta(minutes=5), NOW), sort=NEWEST_FIRST))
    assert ("IXSCAN", "pricetick_symbol_recorded") in raw


def test_gap_a_top_level_or_scans_the_whole_collection(some_ticks: None) -> None:
    """Workaround: the keyset tie-break (same millisecond, smaller tick id) is a second query (selectors._ties)."""
    filter_ = {
        "symbol": "AAA",
        "recorded_at": {"$lte": NOW},
        "$or": [{"recorded_at": {"$lt": NOW}}, {"tick_id": {"$lt": "run-0000000010"}}],
    }
    assert ("COLLSCAN", None) in winning_stages(explain_find(filter_, sort=NEWEST_FIRST, limit=10))


def test_gap_a_condition_on_another_indexed_field_scans_the_whole_collection(some_ticks: None) -> None:
    """Workaround: the tick_id tie-break is applied in Python to the few ticks of one millisecond (_ties)."""
    at = NOW - timedelta(seconds=30)
    with_tick_id = {"symbol": "AAA", "recorded_at": at, "tick_id": {"$lt": "run-0000000010"}}
    assert ("COLLSCAN", None) in winning_stages(explain_find(with_tick_id))
    assert ("IXSCAN", "pricetick_symbol_recorded") in winning_stages(explain_find(ties_filter("AAA", at)))
