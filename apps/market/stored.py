"""Stored history: the tick buckets read over bounded time windows (see apps/market/selectors.py for why
every query is `{symbol, start: <range>}`), and the newest stored tick of a symbol (the simulator's resume).
"""

import logging
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from apps.core.clock import epoch_ms, epoch_ms_ceiling, moment
from apps.core.cursor import KeysetCursor
from apps.market.buckets import document_points
from apps.market.models import TickBucket
from apps.market.ticks import Tick

logger = logging.getLogger(__name__)


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


FIRST_WINDOW_MS = 60_000
MAX_FIRST_WINDOW_MS = 86_400_000  # a density hint never makes the first window wider than a day
MAX_WINDOWS = 40  # growing from a minute, 40 windows reach back far beyond any retention
MAX_WINDOW_GROWTH = 32.0
RESUME_GROWTH = 4  # each resume probe spans 4x the one before: few queries across a gap, bounded overshoot
WINDOW_MARGIN = 1.25
RECENT_FALLBACK_WINDOW = timedelta(minutes=15)
POINT_FIELDS = {"_id": 0, "tick_ids": 1, "times": 1, "prices": 1, "previous_closes": 1, "volumes": 1}
EXTENT_FIELDS = {"_id": 0, "start": 1, "count": 1}


def newest_first(point: dict[str, Any]) -> tuple[int, str]:
    return point["timestamp"], point["tick_id"]


# The filter stored-history reads use; tests/market/test_indexes.py explains it.
def buckets_filter(symbol: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Buckets that may hold points of `symbol` in [since, until): a bucket spans less than one bucket window."""
    reach = timedelta(seconds=settings.TICK_BUCKET_SECONDS)
    return {"symbol": symbol, "start": {"$gt": since - reach, "$lt": until}}


def _points_ms(symbol: str, low: int, high: int) -> list[dict[str, Any]]:
    """Stored points of `symbol` with low <= time (ms) < high, one indexed query (unordered across buckets).

    A bucket's points are in time order, so only the slice inside the window is turned into dicts."""
    found: list[dict[str, Any]] = []
    query = buckets_filter(symbol, moment(low), moment(high))
    for document in TickBucket.collection().find(query, POINT_FIELDS):
        times = document["times"]
        first, last = bisect_left(times, low), bisect_left(times, high)
        if first < last:
            found += document_points(document, first, last)
    return found


def points_between(symbol: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Stored points of `symbol` with since <= time < until (unordered across buckets)."""
    return _points_ms(symbol, epoch_ms_ceiling(since), epoch_ms_ceiling(until))


def ticks_in_window(*, symbol: str, since: datetime, until: datetime, limit: int) -> list[dict[str, Any]]:
    """Newest first, at most `limit`, with since <= time < until: one indexed range of buckets."""
    return sorted(points_between(symbol, since, until), key=newest_first, reverse=True)[:limit]


def _stored_ms(value: datetime) -> int:
    """A stored date (pymongo returns naive UTC) in epoch milliseconds."""
    return epoch_ms(value.replace(tzinfo=UTC))


def _resume_from(*, symbol: str, before: int, wanted: int, horizon: int) -> int | None:
    """Below an empty window ending at `before` (ms): where the walk resumes, or None when nothing is older.

    Probes back in disjoint ranges of bucket starts, each 4 times longer than the last, reading only
    the buckets' extents (SecantusDB cannot return "the newest before" without reading the symbol's
    whole history; a probe reads at most a few times the gap's worth of buckets, and an empty range
    costs almost nothing). In the first range holding buckets, the newest ones that hold `wanted`
    points between them tell where the next window starts, so it usually completes the page. Past
    the retention horizon, one probe asks whether the cleanup left anything older at all.
    """
    collection = TickBucket.collection()
    empty, reaches = 0, FIRST_WINDOW_MS
    while before - empty > horizon:
        lowest = max(before - reaches, horizon)
        span = {"$gte": moment(lowest), "$lt": moment(before - empty)}
        extents = collection.find({"symbol": symbol, "start": span}, EXTENT_FIELDS)
        held = 0
        for start in sorted((_stored_ms(e["start"]), e["count"]) for e in extents)[::-1]:
            held += start[1]
            if held >= wanted:
                break
        if held:
            return start[0]
        empty, reaches = reaches, reaches * RESUME_GROWTH
    older = collection.find_one({"symbol": symbol, "start": {"$lt": moment(horizon)}}, {"end": 1})
    return None if older is None else _stored_ms(older["end"]) - FIRST_WINDOW_MS


def stored_ticks_before(
    *, symbol: str, before: HistoryCursor | None, limit: int, per_ms: float | None = None
) -> list[dict[str, Any]]:
    """Up to `limit` stored ticks older than `before` (or the newest), newest first.

    Walks back in contiguous windows, one indexed query each. The first is sized from `per_ms`
    (points per millisecond, e.g. the ring's density) or is one minute. A window that comes back
    short sizes the next from the density it saw (a little more than the remaining ticks need, at
    most 32 times wider); an empty one asks the index where older ticks resume (`_resume_from`).
    So each query reads a bounded number of buckets and a page usually takes one query, whatever
    the symbol's history holds.
    """
    now = epoch_ms(datetime.now(UTC))
    if before is None:
        before = HistoryCursor(now + 5_000, "")  # "" sorts before any tick id
    cursor = (before.timestamp, before.tick_id)
    horizon = min(now - (settings.PRICE_HISTORY_RETENTION_DAYS + 2) * 86_400_000, before.timestamp)
    high = before.timestamp + 1  # the cursor's own millisecond may hold older ties
    width = FIRST_WINDOW_MS
    if per_ms:
        width = int(min(max(limit / per_ms * WINDOW_MARGIN, 1_000), MAX_FIRST_WINDOW_MS))
    points: list[dict[str, Any]] = []
    for _ in range(MAX_WINDOWS):
        low = high - width
        found = sorted(
            (p for p in _points_ms(symbol, low, high) if newest_first(p) < cursor), key=newest_first, reverse=True
        )
        points += found[: limit - len(points)]
        if len(points) >= limit or low <= 0:
            break
        if found:
            growth = (limit - len(points)) / len(found) * WINDOW_MARGIN
            high, width = low, int(width * min(MAX_WINDOW_GROWTH, max(1.0, growth)))
            continue
        resume = _resume_from(symbol=symbol, before=low, wanted=limit - len(points), horizon=min(horizon, low))
        if resume is None:
            break
        high, width = low, low - resume
    return points


def latest_stored_tick(symbol: str) -> Tick | None:
    """The newest stored tick: the quote of last resort when Redis is down."""
    found = stored_ticks_before(symbol=symbol, before=None, limit=1)
    if not found:
        return None
    point = found[0]
    return Tick(symbol, point["price"], point["previous_close"], point["volume"], point["timestamp"])
