"""The per-process ticker cache that validates subscriptions without a database read per message."""

from __future__ import annotations

import asyncio

import pytest

from apps.market.feed.symbols import REFRESH_SECONDS, TickerDirectory, TickersUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Listing:
    def __init__(self, *tickers: str) -> None:
        self.tickers = frozenset(tickers)
        self.loads = 0
        self.failing = False

    async def __call__(self) -> frozenset[str]:
        self.loads += 1
        if self.failing:
            raise ConnectionError("database away")
        return self.tickers


def test_known_tickers_are_answered_from_the_cache_until_it_is_stale() -> None:
    clock, listing = Clock(), Listing("AAA", "BBB")
    directory = TickerDirectory(listing, clock=clock)

    async def scenario() -> None:
        assert await directory.unknown(["AAA", "ZZZ"]) == ["ZZZ"]
        for _ in range(50):
            assert await directory.unknown(["AAA", "BBB"]) == []
        assert listing.loads == 1
        clock.now += REFRESH_SECONDS + 1
        await directory.unknown(["AAA"])
        assert listing.loads == 2

    asyncio.run(scenario())


def test_unknown_ticker_spam_reloads_at_most_once_a_second_and_finds_a_new_listing() -> None:
    clock, listing = Clock(), Listing("AAA")
    directory = TickerDirectory(listing, clock=clock)

    async def scenario() -> None:
        for _ in range(100):
            assert await directory.unknown(["NEW"]) == ["NEW"]
        assert listing.loads == 1
        listing.tickers = frozenset({"AAA", "NEW"})
        clock.now += 1.5
        assert await directory.unknown(["NEW"]) == []
        assert listing.loads == 2

    asyncio.run(scenario())


def test_the_last_known_tickers_are_kept_while_the_database_is_away_and_none_means_unavailable() -> None:
    clock, listing = Clock(), Listing("AAA")
    listing.failing = True
    directory = TickerDirectory(listing, clock=clock)

    async def scenario() -> None:
        with pytest.raises(TickersUnavailable):
            await directory.unknown(["AAA"])
        listing.failing = False
        clock.now += 1.5
        assert await directory.unknown(["AAA"]) == []
        listing.failing = True
        clock.now += REFRESH_SECONDS + 1
        assert await directory.unknown(["AAA", "BBB"]) == ["BBB"]

    asyncio.run(scenario())
