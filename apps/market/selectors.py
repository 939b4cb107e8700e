"""Reads of the market: symbols with quotes, recent history (Redis ring), stored history (MongoDB).

Stored history lives in tick buckets (apps/market/buckets.py, on the market
database alias) and is read with raw pymongo filters over bounded time windows.
Two SecantusDB gaps (pinned in tests/market/test_secantus_gaps.py) shape this:
its planner never uses an index to provide a sort (so an unbounded
"newest N of a symbol" sorts the symbol's whole history), and it scans the
whole collection for the filters the Django ORM generates (`$and` with
`$exists`/`$ne null` conjuncts) and for any top-level `$or`. So each query here
is `{symbol: s, start: <range>}` (IXSCAN on {symbol, start}) for the buckets
that can hold points of a window with a bounded number of ticks; points are
filtered and ordered here. A real MongoDB serves the same filters from the index too.
"""

import json
import logging
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.db.models import Q

from apps.core.cache import cached
from apps.core.redis import redis_client
from apps.market import quotes
from apps.market.models import Sector, Symbol, TickBucket
from apps.market.quotes import latest_quotes
from apps.market.ring import BoundedRing, ring_key
from apps.market.simulator import SymbolSpec
from apps.market.stored import (
    RECENT_FALLBACK_WINDOW,
    HistoryCursor,
    latest_stored_tick,
    newest_first,
    points_between,
    stored_ticks_before,
)
from apps.market.stored import buckets_filter as buckets_filter  # re-exported: stored reads are selectors too
from apps.market.stored import ticks_in_window as ticks_in_window
from apps.market.stream import TickGroupReader
from apps.market.ticks import Tick

logger = logging.getLogger(__name__)

# --- Symbols --------------------------------------------------------------------------------


def simulated_symbols(count: int) -> list[SymbolSpec]:
    """The first `count` active symbols by ticker: what the simulator ticks."""
    rows = Symbol.objects.filter(active=True).order_by("ticker").values_list("ticker", "sector", "initial_price")
    return [SymbolSpec(ticker, sector, price) for ticker, sector, price in rows[:count]]


@dataclass(frozen=True)
class Listing:
    """What a symbol list shows of a symbol (plain values: cheap to cache and decode, unlike a model)."""

    ticker: str
    name: str
    sector: str
    active: bool


@dataclass(frozen=True)
class SymbolPage:
    symbols: list[Listing]
    quotes: dict[str, dict[str, Any]]
    total: int


def quotes_or_nothing(tickers: list[str]) -> dict[str, dict[str, Any]]:
    """Latest quotes in one MGET; when Redis is down, none (a list still renders), logged."""
    try:
        return latest_quotes(tickers)
    except redis.RedisError as error:
        logger.warning("quotes unavailable, Redis failed (%s); listing symbols without prices", error)
        return {}


def symbol_page(*, page: int, limit: int, sector: str | None = None, search: str | None = None) -> SymbolPage:
    """One page of symbols ordered by ticker (unique, so the order is stable: Property 37).

    The listing comes through the cache (symbols change rarely; every change invalidates
    the namespace, see apps/market/signals.py); quotes are always the latest.
    """

    def listing() -> tuple[list[tuple[str, str, str, bool]], int]:
        queryset = Symbol.objects.all()
        if sector:
            queryset = queryset.filter(sector=sector)
        if search:
            queryset = queryset.filter(Q(ticker__icontains=search) | Q(name__icontains=search))
        start = (page - 1) * limit
        rows = queryset.order_by("ticker").values_list("ticker", "name", "sector", "active")[start : start + limit]
        return [tuple(row) for row in rows], queryset.count()  # type: ignore[misc]

    rows, total = cached("symbols", f"listing:{page}:{limit}:{sector or ''}:{search or ''}", listing)
    symbols = [Listing(*row) for row in rows]
    return SymbolPage(symbols, quotes_or_nothing([s.ticker for s in symbols]), total)


def symbol_rows() -> list[dict[str, Any]]:
    """Every listed symbol (ticker, name, sector, initial_price, active) by ticker, in one query."""
    rows = Symbol.objects.order_by("ticker").values("ticker", "name", "sector", "initial_price", "active")
    return [dict(row) for row in rows]


def symbol_exists(ticker: str) -> bool:
    return Symbol.objects.filter(ticker=ticker).exists()


def symbol_count() -> int:
    return Symbol.objects.count()


def latest_prices(symbols: Iterable[str]) -> dict[str, Decimal]:
    """Latest price per symbol as Decimal, for money arithmetic (one MGET of the quotes)."""
    return quotes.latest_prices(symbols)


def every_latest_price() -> dict[str, int]:
    """The latest price of every listed symbol that has one, in cents (the order engine's start): one query,
    one MGET."""
    tickers = list(Symbol.objects.values_list("ticker", flat=True))
    return {symbol: round(q["price"] * 100) for symbol, q in latest_quotes(tickers).items()}


def sector_labels() -> dict[str, str]:
    """Every sector's value and label, in their listed order."""
    return dict(Sector.choices)


def sector_by_ticker() -> dict[str, str]:
    """Each listed symbol's sector (one query)."""
    return dict(Symbol.objects.values_list("ticker", "sector"))


def ring_prices(symbols: list[str], count: int) -> dict[str, list[float]]:
    """The newest `count` prices of each symbol's ring, oldest first, in one pipelined round trip.

    Raises redis.RedisError when Redis cannot answer: the caller decides what to leave out."""
    pipe = redis_client().pipeline(transaction=False)
    for symbol in symbols:
        pipe.lrange(ring_key(symbol), 0, count - 1)
    rings = pipe.execute()
    # the ring is newest first
    return {
        symbol: [float(json.loads(p)["price"]) for p in reversed(points)]
        for symbol, points in zip(symbols, rings, strict=True)
    }


def symbol_by_ticker(ticker: str) -> Symbol | None:
    """The listed symbol (None when unlisted), through the cache: an order's lookup costs no database call.

    Any change to the universe invalidates the namespace (apps/market/signals.py), halts included.
    """
    if len(ticker) > Symbol._meta.get_field("ticker").max_length:  # type: ignore[operator]
        return None
    return cached("symbols", f"ticker:{ticker}", lambda: Symbol.objects.filter(ticker=ticker).first())


def last_known_ticks(symbols: list[str]) -> dict[str, Tick]:
    """Each symbol's last tick: its Redis quote, else its newest stored tick (where a restarted simulator resumes)."""
    quotes = quotes_or_nothing(symbols)
    last = {
        symbol: Tick(symbol, float(q["price"]), float(q["previous_close"]), int(q["volume"]), int(q["timestamp"]))
        for symbol, q in quotes.items()
    }
    if len(last) < len(symbols) and TickBucket.collection().estimated_document_count():
        for symbol in symbols:
            if symbol not in last and (tick := latest_stored_tick(symbol)) is not None:
                last[symbol] = tick
    return last


def symbol_quote(symbol: str) -> dict[str, Any] | None:
    """The latest quote from Redis; when Redis is down, the newest stored tick (logged)."""
    try:
        return latest_quotes([symbol]).get(symbol)
    except redis.RedisError as error:
        logger.warning("quote of %s from the latest stored tick: Redis failed (%s)", symbol, error)
    tick = latest_stored_tick(symbol)
    return {**tick.as_update(), "previous_close": tick.previous_close} if tick else None


# --- Recent history (the ring) and keyset pages -------------------------------------------------


def _ring_points(symbol: str, count: int | None = None) -> list[dict[str, Any]]:
    """The newest `count` (default: all) ring points, newest first."""
    last = min(count or settings.PRICE_RING_SIZE, settings.PRICE_RING_SIZE) - 1
    return [json.loads(raw) for raw in redis_client().lrange(ring_key(symbol), 0, last)]


def recent_history(symbol: str) -> list[dict[str, Any]]:
    """The symbol's recent points, oldest first, at most PRICE_RING_SIZE (the dashboard chart).

    From the Redis ring; when Redis is down, from a bounded window of stored
    ticks kept in a BoundedRing, so memory stays bounded whatever the window holds.
    """
    try:
        return _ring_points(symbol)[::-1]
    except redis.RedisError as error:
        logger.warning("recent history of %s from MongoDB: Redis failed (%s)", symbol, error)
    ring: BoundedRing[dict[str, Any]] = BoundedRing(settings.PRICE_RING_SIZE)
    until = datetime.now(UTC) + timedelta(seconds=5)
    ring.extend(_ascending(symbol=symbol, since=until - RECENT_FALLBACK_WINDOW, until=until))
    return list(ring)


def _ascending(*, symbol: str, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    yield from sorted(points_between(symbol, since, until), key=newest_first)


@dataclass(frozen=True)
class HistoryPage:
    points: list[dict[str, Any]]
    next_cursor: HistoryCursor | None


def _ring_page(symbol: str, before: HistoryCursor | None, wanted: int) -> tuple[list[dict[str, Any]], float | None]:
    """Up to `wanted` ring points after `before`, newest first, and the ring's density (points per ms).

    The ring is newest first in (time, tick id) order (one server time per simulator batch, ids
    rising within it), so the cursor's place is found by bisection: a page that starts below the
    ring decodes two points, not the whole ring. The density sizes the first stored window."""
    raw = redis_client().lrange(ring_key(symbol), 0, (wanted if before is None else settings.PRICE_RING_SIZE) - 1)
    if not raw:
        return [], None
    first = 0
    if before is not None:
        first = bisect_left(range(len(raw)), True, key=lambda i: before.is_after(json.loads(raw[i])))
    points = [json.loads(point) for point in raw[first : first + wanted]]
    newest, oldest = json.loads(raw[0]), json.loads(raw[-1])
    span = newest["timestamp"] - oldest["timestamp"]
    return points, (len(raw) - 1) / span if span > 0 else None


def tick_history(*, symbol: str, limit: int, before: HistoryCursor | None = None) -> HistoryPage:
    """A newest-first page of `limit` points after `before`; pages never repeat or skip (Property 37).

    The order is (timestamp, tick id), a total order both stores share. Points
    still in the Redis ring come from there (no database query for the latest
    page); the rest continue from MongoDB at the last ring point's position.
    """
    wanted = limit + 1  # one more tells whether another page exists
    try:
        points, per_ms = _ring_page(symbol, before, wanted)
    except redis.RedisError as error:
        logger.warning("history of %s from MongoDB only: Redis failed (%s)", symbol, error)
        points, per_ms = [], None
    if len(points) < wanted:
        resume = HistoryCursor.after(points[-1]) if points else before
        points += stored_ticks_before(symbol=symbol, before=resume, limit=wanted - len(points), per_ms=per_ms)
    page = points[:limit]
    return HistoryPage(page, HistoryCursor.after(page[-1]) if len(points) > limit else None)


def tick_group_reader(client: redis.Redis, *, group: str, consumer: str) -> TickGroupReader:
    """Live ticks through a consumer group of the caller's own (the order matcher's), new ticks first read."""
    return TickGroupReader(client, group=group, consumer=consumer)
