"""Property 41 on the app's own cached reads, counting real MongoDB commands.

The reads are the app's selectors (a trader's profile, symbol listing pages, leaderboard pages, the
analytics summary) over the real two-layer cache, Redis and SecantusDB; orders in between invalidate
their trader's profile. Nothing here counts loader calls: the pymongo command listener counts what
really reached the database. bench/cache.py measures the same on a larger mix.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.analytics.selectors import analytics_summary
from apps.analytics.services import analytics_refresh
from apps.core.cache import default_cache
from apps.core.redis import redis_client
from apps.leaderboard.selectors import leaderboard_page
from apps.leaderboard.services import leaderboard_rebuild
from apps.market.models import Symbol
from apps.market.quotes import stage_quotes
from apps.market.selectors import symbol_page
from apps.market.services import symbols_seed
from apps.market.ticks import Tick
from apps.portfolio.selectors import trader_profile
from apps.portfolio.services import place_order, trader_create
from tests.mongo_commands import MONGO_COMMANDS

TRADERS = 4
SYMBOL_PAGES = 3
LEADERBOARD_PAGES = 2

Operation = tuple[str, int]
reads = st.one_of(
    st.tuples(st.just("profile"), st.integers(0, TRADERS - 1)),
    st.tuples(st.just("symbols"), st.integers(1, SYMBOL_PAGES)),
    st.tuples(st.just("leaderboard"), st.integers(1, LEADERBOARD_PAGES)),
    st.tuples(st.just("analytics"), st.just(0)),
)
orders = st.tuples(st.just("order"), st.integers(0, TRADERS - 1))  # a write: invalidates that trader's profile


@st.composite
def working_sets(draw: st.DrawFn) -> list[Operation]:
    """A few keys read five or six times each, with up to one order anywhere in between (which may force
    extra misses: the test then learns the misses from the pattern, not from this recipe)."""
    keys = draw(st.lists(reads, min_size=1, max_size=3, unique=True))
    pattern: list[Operation] = draw(st.lists(st.sampled_from(keys), min_size=5 * len(keys), max_size=6 * len(keys)))
    for order in draw(st.lists(orders, max_size=1)):
        pattern.insert(draw(st.integers(0, len(pattern))), order)
    return pattern


# Any mix at all, and working sets: a random mix rarely repeats its keys enough for the 60 % to apply, so
# without the second kind the threshold itself would almost never be checked.
patterns = st.one_of(st.lists(st.one_of(reads, orders), min_size=1, max_size=10), working_sets())


def stage_prices(tickers: list[str]) -> None:
    pipeline = redis_client().pipeline(transaction=False)
    stage_quotes(pipeline, [Tick(ticker, 10.0, 10.0, 1000, 1_700_000_000_000) for ticker in tickers])
    pipeline.execute()


@pytest.fixture
def market(db: None, order_engine: object) -> tuple[list[User], list[str]]:
    list(symbols_seed(count=60))
    tickers = sorted(Symbol.objects.values_list("ticker", flat=True))
    stage_prices(tickers)
    users = [trader_create(username=f"p41-{n}", cash=Decimal("100000"))[0].user for n in range(TRADERS)]
    leaderboard_rebuild()
    analytics_refresh()
    return users, tickers


def perform(operation: Operation, users: list[User], tickers: list[str]) -> Any:
    kind, key = operation
    if kind == "profile":
        return trader_profile(users[key])
    if kind == "symbols":
        return [s.ticker for s in symbol_page(page=key, limit=20).symbols]
    if kind == "leaderboard":
        return [e["username"] for e in leaderboard_page(page=key, page_size=2).entries]
    if kind == "analytics":
        return analytics_summary().get("computed_at")
    trader = users[key].trader
    return place_order(trader=trader, symbol=tickers[0], side="buy", quantity=1).order.pk


def database_reads(pattern: list[Operation], users: list[User], tickers: list[str]) -> list[int]:
    """MongoDB commands each read of `pattern` sent (writes run but are not counted)."""
    per_read = []
    for operation in pattern:
        with MONGO_COMMANDS.recording() as commands:
            perform(operation, users, tickers)
        if operation[0] != "order":
            per_read.append(len(commands))
    return per_read


def expected_misses(pattern: list[Operation]) -> list[bool]:
    """Which reads a cache must send to the database: the first of each key, and a profile after its trader's order."""
    seen: set[Operation] = set()
    misses = []
    for kind, key in pattern:
        if kind == "order":
            seen.discard(("profile", key))
            continue
        misses.append((kind, key) not in seen)
        seen.add((kind, key))
    return misses


def forget_everything(tickers: list[str]) -> None:
    """Empty both cache layers (the whole Redis database), then put the quotes back."""
    redis_client().flushdb()
    default_cache().local.clear()
    stage_prices(tickers)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pattern=patterns)
def test_caching_cuts_database_reads_by_at_least_60_percent(
    market: tuple[list[User], list[str]], pattern: list[Operation]
) -> None:
    """Feature: trading-performance-optimization, Property 41: For any system operation pattern, effective caching
    should reduce database load by 60% — the app's reads through the cache send real MongoDB commands only on a
    miss (the first read of a key, or a profile after its trader's order), and every pattern whose reads are at most
    20 % misses sends at most 40 % of the MongoDB commands the same pattern sends with the cache off."""
    users, tickers = market
    with override_settings(CACHE_ENABLED=False):
        forget_everything(tickers)
        uncached = database_reads(pattern, users, tickers)
    forget_everything(tickers)
    cached = database_reads(pattern, users, tickers)

    assert all(commands > 0 for commands in uncached), "a read without the cache must reach the database"
    misses = expected_misses(pattern)
    for commands, miss in zip(cached, misses, strict=True):
        if not miss:
            assert commands == 0, f"a cache hit sent {commands} MongoDB command(s)"
    if misses and sum(misses) <= 0.2 * len(misses):  # caching that can be effective: the document's 60 %
        assert sum(cached) <= 0.4 * sum(uncached), (sum(cached), sum(uncached))
