"""Fixtures for trading tests: listed symbols with live quotes, traders, round-trip counters."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from pymongo import monitoring

from apps.core.redis import redis_client
from apps.market.models import Symbol
from apps.market.quotes import stage_quotes
from apps.market.ticks import Tick
from apps.portfolio.models import Trader
from apps.portfolio.services import trader_create

ALL_THREADS = -1


class CommandCounter(monitoring.CommandListener):
    """Counts MongoDB commands sent while enabled (round trips), from this thread only (or ALL_THREADS)."""

    def __init__(self) -> None:
        self.enabled_for: int | None = None
        self.commands: list[str] = []
        self.documents: list[dict[str, object]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.enabled_for in (threading.get_ident(), ALL_THREADS):
            self.commands.append(event.command_name)
            self.documents.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# Registered at import, before any MongoClient exists: listeners apply to clients created later.
MONGO_COMMANDS = CommandCounter()
monitoring.register(MONGO_COMMANDS)


def set_quotes(prices: dict[str, Decimal | float | str]) -> None:
    """Publish latest quotes the way the market engine does."""
    now = int(time.time() * 1000)
    ticks = [
        Tick(symbol=s, price=float(p), previous_close=float(p), volume=0, timestamp=now) for s, p in prices.items()
    ]
    pipe = redis_client().pipeline()
    stage_quotes(pipe, ticks)
    pipe.execute()


def list_symbols(*tickers: str, active: bool = True) -> None:
    Symbol.objects.bulk_create(
        Symbol(ticker=t, name=f"{t} Corp", sector="technology", initial_price=Decimal("10.00"), active=active)
        for t in tickers
    )


@pytest.fixture
def market(db: None) -> dict[str, Decimal]:
    """ACME at 10.00 and BOLT at 25.50 with quotes, HALT halted, NOQ listed without a quote."""
    prices = {"ACME": Decimal("10.00"), "BOLT": Decimal("25.50")}
    list_symbols("ACME", "BOLT", "NOQ")
    list_symbols("HALT", active=False)
    set_quotes({**prices, "HALT": Decimal("5.00")})
    return prices


@pytest.fixture
def make_trader(db: None, order_engine: object) -> Callable[..., tuple[Trader, str]]:
    def make(
        cash: Decimal | str = "100000.00", name: str | None = None, password: str | None = None
    ) -> tuple[Trader, str]:
        """A trader and its API token (no password unless asked: hashing one is slow on purpose)."""
        return trader_create(username=name or f"trader-{uuid.uuid4().hex[:12]}", cash=Decimal(cash), password=password)

    return make


class RoundTrips:
    def __init__(self) -> None:
        self.redis_calls = 0
        self.thread: object = None  # whose round trips count: a thread's ident, or ALL_THREADS

    @property
    def mongo(self) -> list[str]:
        return MONGO_COMMANDS.commands


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], RoundTrips]]:
    """counting() starts counting afresh: MongoDB commands and Redis round trips (a command, or a whole
    pipeline) of this thread, or of every thread with `all_threads=True` (the order engines' threads read
    their streams all the time, so a count of any thread would count them too)."""
    import redis

    state = RoundTrips()
    command, pipeline = redis.Redis.execute_command, redis.client.Pipeline.execute

    def counts() -> bool:
        return state.thread in (ALL_THREADS, threading.get_ident())

    def counted(self: redis.Redis, *args: object, **kwargs: object) -> object:
        state.redis_calls += counts()
        return command(self, *args, **kwargs)

    def counted_pipeline(self: redis.client.Pipeline, *args: object, **kwargs: object) -> object:
        state.redis_calls += counts()
        return pipeline(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", counted)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counted_pipeline)

    def counting(*, all_threads: bool = False) -> RoundTrips:
        MONGO_COMMANDS.commands.clear()
        MONGO_COMMANDS.documents.clear()
        MONGO_COMMANDS.enabled_for = state.thread = ALL_THREADS if all_threads else threading.get_ident()
        state.redis_calls = 0
        return state

    yield counting
    MONGO_COMMANDS.enabled_for = None
