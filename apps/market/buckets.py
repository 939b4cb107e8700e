"""Tick buckets: one stored document per symbol per time window (MongoDB's bucket pattern; ADR 0005).

The persister holds each symbol's ticks in an open bucket and stores a bucket
once it closes: its window ended, it is full, or the persister holds too
many ticks. One bulk insert then stores every closed bucket. A bucket's id
is its symbol and window, so any part of a window stored before (a bucket
that closed early because it was full, or one stored before a crash and
re-delivered in other batches) is recognised (duplicate key) and only the
points it lacks are merged in: each tick is stored exactly once
(Property 36). Points are kept in (time, tick id) order, the total order
history pages use (Property 37).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, OperationFailure

from apps.core.clock import moment
from apps.core.indexes import in_lists
from apps.market.models import TickBucket
from apps.market.stream import NumberedTick
from apps.market.ticks import Tick

DUPLICATE_KEY = 11000
POINT_ARRAYS = ("tick_ids", "times", "prices", "previous_closes", "volumes")


def bucket_id(symbol: str, first: NumberedTick, window_ms: int) -> str:
    """Symbol and window start: every tick of one symbol in one window belongs to this one document."""
    window_start = first[1].timestamp // window_ms * window_ms
    return f"{symbol}|{window_start:013d}"


def _in_order(ticks: Iterable[NumberedTick]) -> list[NumberedTick]:
    return sorted(ticks, key=lambda numbered: (numbered[1].timestamp, numbered[0]))


def bucket_document(
    symbol: str, ticks: Sequence[NumberedTick], *, window_ms: int | None = None, document_id: str | None = None
) -> dict[str, Any]:
    """The stored form of one bucket (ticks of one window): parallel point arrays in (time, tick id) order."""
    ordered = _in_order(ticks)
    window = window_ms or settings.TICK_BUCKET_SECONDS * 1000
    return {
        "_id": document_id or bucket_id(symbol, ordered[0], window),
        "symbol": symbol,
        "start": moment(ordered[0][1].timestamp),
        "end": moment(ordered[-1][1].timestamp),
        "count": len(ordered),
        "tick_ids": [tick_id for tick_id, _ in ordered],
        "times": [tick.timestamp for _, tick in ordered],
        "prices": [tick.price for _, tick in ordered],
        "previous_closes": [tick.previous_close for _, tick in ordered],
        "volumes": [tick.volume for _, tick in ordered],
    }


def document_ticks(document: dict[str, Any]) -> list[NumberedTick]:
    """The bucket's points as numbered ticks, in stored order."""
    symbol = document["symbol"]
    columns = zip(*(document[name] for name in POINT_ARRAYS), strict=True)
    return [
        (tick_id, Tick(symbol, float(price), float(close), int(volume), int(at)))
        for tick_id, at, price, close, volume in columns
    ]


def document_points(document: dict[str, Any], first: int = 0, last: int | None = None) -> list[dict[str, Any]]:
    """The bucket's points [first:last] in the shape of ring points (plus the previous close), oldest first."""
    columns = zip(*(document[name][first:last] for name in POINT_ARRAYS), strict=True)
    return [
        {"tick_id": tick_id, "price": price, "previous_close": close, "volume": volume, "timestamp": at}
        for tick_id, at, price, close, volume in columns
    ]


@dataclass
class Bucket:
    """Ticks of one symbol in one window, with the stream entries that carried them."""

    symbol: str
    window: int
    ticks: list[NumberedTick] = field(default_factory=list)
    entry_ids: list[bytes] = field(default_factory=list)


class BucketAssembler:
    """Open buckets per symbol; hands back the buckets that close."""

    def __init__(self, *, window_ms: int, max_points: int, hold_max: int, grace_ms: int = 1000) -> None:
        if window_ms <= 0 or max_points <= 0 or hold_max <= 0:
            raise ValueError("window_ms, max_points and hold_max must be positive")
        self.window_ms, self.max_points, self.hold_max, self.grace_ms = window_ms, max_points, hold_max, grace_ms
        self._open: dict[str, Bucket] = {}
        self.held = 0

    def add(self, entry_id: bytes, numbered: NumberedTick) -> list[Bucket]:
        """Hold one tick; return the buckets it closed (its symbol moved to another window, or it filled up)."""
        tick = numbered[1]
        window = tick.timestamp // self.window_ms
        current = self._open.get(tick.symbol)
        closed: list[Bucket] = []
        if current is None or current.window != window:
            if current is not None:
                closed.append(self._close(tick.symbol))
            current = self._open[tick.symbol] = Bucket(tick.symbol, window)
        current.ticks.append(numbered)
        current.entry_ids.append(entry_id)
        self.held += 1
        if len(current.ticks) >= self.max_points:
            closed.append(self._close(tick.symbol))
        return closed

    def due(self, *, now_ms: int) -> list[Bucket]:
        """Buckets whose window has ended (plus a grace for ticks in flight); every bucket once hold_max are held."""
        if self.held >= self.hold_max:
            return self.close_all()
        ended = [s for s, b in self._open.items() if (b.window + 1) * self.window_ms + self.grace_ms <= now_ms]
        return [self._close(symbol) for symbol in ended]

    def close_all(self) -> list[Bucket]:
        return [self._close(symbol) for symbol in list(self._open)]

    def _close(self, symbol: str) -> Bucket:
        bucket = self._open.pop(symbol)
        self.held -= len(bucket.ticks)
        return bucket


class MongoBucketStore:
    """Closed buckets -> one unordered bulk insert on the market database; re-deliveries merged, never doubled."""

    def __init__(self, collection: Collection[dict[str, Any]] | None = None, *, window_ms: int | None = None) -> None:
        self._collection = collection
        self.window_ms = window_ms

    @property
    def collection(self) -> Collection[dict[str, Any]]:
        return self._collection if self._collection is not None else TickBucket.collection()

    def insert(self, buckets: Sequence[Bucket]) -> int:
        """Store the buckets in one write; return how many ticks were new."""
        window = self.window_ms or settings.TICK_BUCKET_SECONDS * 1000
        by_window: dict[str, tuple[str, list[NumberedTick]]] = {}
        for bucket in buckets:  # buckets of one window (closed early when full) go in as one document
            if bucket.ticks:
                entry = by_window.setdefault(bucket_id(bucket.symbol, bucket.ticks[0], window), (bucket.symbol, []))
                entry[1].extend(bucket.ticks)
        documents = [bucket_document(symbol, ticks, window_ms=window) for symbol, ticks in by_window.values()]
        return self.insert_documents(documents)

    def insert_documents(self, documents: Sequence[dict[str, Any]]) -> int:
        if not documents:
            return 0
        try:
            self.collection.insert_many(documents, ordered=False)
            return sum(d["count"] for d in documents)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            already = {int(e["index"]) for e in errors}
        stored = sum(d["count"] for i, d in enumerate(documents) if i not in already)
        return stored + self._merge([documents[i] for i in sorted(already)])

    def _merge(self, documents: Sequence[dict[str, Any]]) -> int:
        """Buckets whose window is stored already (re-delivered, or closed early when full): add only
        the points the stored bucket lacks, in one guarded replace per bucket."""
        ids = [d["_id"] for d in documents]
        stored = {d["_id"]: d for some in in_lists(ids) for d in self.collection.find({"_id": {"$in": list(some)}})}
        replacements, added = [], 0
        for document in documents:
            existing = stored.get(document["_id"])
            if existing is None:  # removed since (retention): store it again as it is
                replacements.append(ReplaceOne({"_id": document["_id"]}, document, upsert=True))
                added += document["count"]
                continue
            known = set(existing["tick_ids"])
            missing = [numbered for numbered in document_ticks(document) if numbered[0] not in known]
            if missing:
                merged = bucket_document(
                    document["symbol"], document_ticks(existing) + missing, document_id=document["_id"]
                )
                replacements.append(ReplaceOne({"_id": document["_id"], "count": existing["count"]}, merged))
                added += len(missing)
        if replacements:
            result = self.collection.bulk_write(replacements, ordered=False)
            if result.matched_count + len(result.upserted_ids or {}) < len(replacements):
                # Another writer changed a bucket between our read and our write: the caller retries the batch.
                raise OperationFailure("a tick bucket changed while its points were merged; retrying")
        return added


def ticks_as_documents(ticks: Iterable[NumberedTick], *, window_ms: int, max_points: int) -> list[dict[str, Any]]:
    """Complete buckets for ticks already known (the migration, tests, benches): one per symbol and window.

    The same ticks always make the same buckets (ids included), so storing them twice merges, never doubles.
    `max_points` bounds only what a persister holds open; a stored window may hold more.
    """
    by_window: dict[tuple[str, int], list[NumberedTick]] = {}
    for numbered in ticks:
        by_window.setdefault((numbered[1].symbol, numbered[1].timestamp // window_ms), []).append(numbered)
    return [bucket_document(symbol, chunk, window_ms=window_ms) for (symbol, _), chunk in by_window.items()]


def store_ticks(ticks: Sequence[NumberedTick], *, store: MongoBucketStore | None = None) -> int:
    """Store known ticks in complete buckets with the configured bounds; return how many were new."""
    documents = ticks_as_documents(
        ticks, window_ms=settings.TICK_BUCKET_SECONDS * 1000, max_points=settings.TICK_BUCKET_MAX_POINTS
    )
    return (store or MongoBucketStore()).insert_documents(documents)
