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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.db.models import Q

from apps.core.cache import cached
from apps.core.clock import epoch_ms, moment
from apps.core.cursor import KeysetCursor
from apps.core.redis import redis_client
from apps.market import quotes
from apps.market.buckets import document_points
from apps.market.models import Sector, Symbol, TickBucket
from apps.market.quotes import latest_quotes
from apps.market.ring import BoundedRing, ring_key
from apps.market.simulator import SymbolSpec
from apps.market.stream import TickGroupReader
from apps.market.ticks import Tick

logger = logging.getLogger(__name__)

FIRST_WINDOW = timedelta(seconds=60)
MAX_WINDOWS = 40  # growing from a minute, 40 windows reach back far beyond any retention
MAX_WINDOW_GROWTH = 32.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WINDOW_MARGIN = 1.25
RECENT_FALLBACK_WINDOW = timedelta(minutes=15)
POINT_FIELDS = {"_id": 0, "tick_ids": 1, "times": 1, "prices": 1, "previous_closes": 1, "volumes": 1}


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


# --- Stored ticks -----------------------------------------------------------------------------


def _newest_first(point: dict[str, Any]) -> tuple[int, str]:
    return point["timestamp"], point["tick_id"]


# The filter stored-history reads use; tests/market/test_indexes.py explains it.
def buckets_filter(symbol: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Buckets that may hold points of `symbol` in [since, until): a bucket spans less than one bucket window."""
    reach = timedelta(seconds=settings.TICK_BUCKET_SECONDS)
    return {"symbol": symbol, "start": {"$gt": since - reach, "$lt": until}}


def _points_between(symbol: str, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    """Stored points of `symbol` with since <= time < until, bucket by bucket (unordered across buckets)."""
    low, high = epoch_ms(since), epoch_ms(until)
    for document in TickBucket.collection().find(buckets_filter(symbol, since, until), POINT_FIELDS):
        yield from (p for p in document_points(document) if low <= p["timestamp"] < high)


def ticks_in_window(*, symbol: str, since: datetime, until: datetime, limit: int) -> list[dict[str, Any]]:
    """Newest first, at most `limit`, with since <= time < until: one indexed range of buckets."""
    return sorted(_points_between(symbol, since, until), key=_newest_first, reverse=True)[:limit]


def _ties(*, symbol: str, at: datetime, below_tick_id: str, limit: int) -> list[dict[str, Any]]:
    """Points stamped exactly `at` and ordered before the cursor's point (one symbol's ticks in one ms are few)."""
    found = _points_between(symbol, at, at + timedelta(milliseconds=1))
    return sorted((p for p in found if p["tick_id"] < below_tick_id), key=_newest_first, reverse=True)[:limit]


def _any_between(*, symbol: str, since: datetime, until: datetime) -> bool:
    """One index probe, no sort: does a bucket of `symbol` start in [since, until) (its first tick lies there)?

    A tick in a bucket that started up to one window before `since` is not seen; the walk still
    reads it, because the window after a resume point reaches a minute (> one bucket window) past it.
    """
    found = TickBucket.collection().find_one({"symbol": symbol, "start": {"$gte": since, "$lt": until}}, {"_id": 1})
    return found is not None


def _anything_before(*, symbol: str, before: datetime) -> bool:
    """One index probe: is any tick of `symbol` older than `before`? (A bucket's first point is its start.)"""
    return TickBucket.collection().find_one({"symbol": symbol, "start": {"$lt": before}}, {"_id": 1}) is not None


def _resume_point(*, symbol: str, before: datetime) -> datetime | None:
    """A moment at most one minute before the newest stored tick older than `before` (None: nothing older).

    Found with bounded index probes only: SecantusDB cannot return the newest
    without sorting the symbol's history, and its index scan reads every key of
    the range it is given, so no probe spans more than the gap plus what it finds.
    Widen the gap until a tick shows up, then halve it down to a minute.
    """
    if not _anything_before(symbol=symbol, before=before):
        return None  # the end of the symbol's history: one probe, not one per doubling back to 1970
    # Invariant: nothing in [before - empty, before); some tick in [before - reaches, before).
    empty, reaches = timedelta(0), FIRST_WINDOW
    while not _any_between(symbol=symbol, since=before - reaches, until=before):
        if reaches >= before - EPOCH:
            return None
        empty, reaches = reaches, min(reaches * 2, before - EPOCH)
    while reaches - empty > FIRST_WINDOW:
        middle = empty + (reaches - empty) / 2
        if _any_between(symbol=symbol, since=before - middle, until=before):
            reaches = middle
        else:
            empty = middle
    return before - reaches


def stored_ticks_before(*, symbol: str, before: "HistoryCursor | None", limit: int) -> list[dict[str, Any]]:
    """Up to `limit` stored ticks older than `before` (or the newest), newest first.

    Walks back in contiguous windows, starting with one minute. A window that
    comes back short sizes the next one from the density it saw (a little more
    than the remaining ticks need, at most 32 times wider); an empty one asks
    the index where older ticks resume and reaches a minute past that. So
    each query sorts a bounded number of ticks and a page takes a few queries,
    whatever the symbol's history holds.
    """
    if before is None:
        upper, points = datetime.now(UTC) + timedelta(seconds=5), []
    else:
        upper = moment(before.timestamp)
        points = _ties(symbol=symbol, at=upper, below_tick_id=before.tick_id, limit=limit)
    width = FIRST_WINDOW
    for _ in range(MAX_WINDOWS):
        if len(points) >= limit:
            break
        lower = upper - width
        found = ticks_in_window(symbol=symbol, since=lower, until=upper, limit=limit - len(points))
        points += found
        if found:
            growth = (limit - len(points)) / len(found) * WINDOW_MARGIN
            upper, width = lower, width * min(MAX_WINDOW_GROWTH, max(1.0, growth))
            continue
        resume = _resume_point(symbol=symbol, before=lower)
        if resume is None:
            break
        upper, width = lower, (lower - resume) + FIRST_WINDOW
    return points[:limit]


def latest_stored_tick(symbol: str) -> Tick | None:
    """The newest stored tick: the quote of last resort when Redis is down."""
    found = stored_ticks_before(symbol=symbol, before=None, limit=1)
    if not found:
        return None
    point = found[0]
    return Tick(symbol, point["price"], point["previous_close"], point["volume"], point["timestamp"])


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


@dataclass(frozen=True)
class HistoryCursor(KeysetCursor):
    """Position after the last point of a page: (timestamp ms, tick id), newest-first order."""

    NAME = "history cursor"

    @property
    def tick_id(self) -> str:
        return self.key

    @classmethod
    def after(cls, point: dict[str, Any]) -> "HistoryCursor":
        return cls(int(point["timestamp"]), str(point["tick_id"]))

    def is_after(self, point: dict[str, Any]) -> bool:
        """True when `point` comes after this cursor in newest-first order (it is older)."""
        return (point["timestamp"], point["tick_id"]) < (self.timestamp, self.tick_id)


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
    yield from sorted(_points_between(symbol, since, until), key=_newest_first)


@dataclass(frozen=True)
class HistoryPage:
    points: list[dict[str, Any]]
    next_cursor: HistoryCursor | None


def tick_history(*, symbol: str, limit: int, before: HistoryCursor | None = None) -> HistoryPage:
    """A newest-first page of `limit` points after `before`; pages never repeat or skip (Property 37).

    The order is (timestamp, tick id), a total order both stores share. Points
    still in the Redis ring come from there (no database query for the latest
    page); the rest continue from MongoDB at the last ring point's position.
    """
    wanted = limit + 1  # one more tells whether another page exists
    try:
        if before is None:
            points = _ring_points(symbol, wanted)
        else:
            points = [p for p in _ring_points(symbol) if before.is_after(p)][:wanted]
    except redis.RedisError as error:
        logger.warning("history of %s from MongoDB only: Redis failed (%s)", symbol, error)
        points = []
    if len(points) < wanted:
        resume = HistoryCursor.after(points[-1]) if points else before
        points += stored_ticks_before(symbol=symbol, before=resume, limit=wanted - len(points))
    page = points[:limit]
    return HistoryPage(page, HistoryCursor.after(page[-1]) if len(points) > limit else None)


def tick_group_reader(client: redis.Redis, *, group: str, consumer: str) -> TickGroupReader:
    """Live ticks through a consumer group of the caller's own (the order matcher's), new ticks first read."""
    return TickGroupReader(client, group=group, consumer=consumer)
