"""Price-history retention (Property 29): delete ticks older than PRICE_HISTORY_RETENTION_DAYS.

Ticks are stored in buckets (apps/market/buckets.py). Buckets whose last
point is older than the cutoff go whole, in bounded batches by `_id` (the ids
of buckets holding up to `batch_size` ticks, found through the `end` index,
then one delete of exactly those), with a pause between batches so the
persister's inserts are never stuck behind one long delete. A bucket the
cutoff falls inside keeps only its newer points: such a bucket ends within
one bucket window after the cutoff, so one bounded index range finds them.
"""

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from pymongo import ReplaceOne

from apps.core.clock import epoch_ms_ceiling
from apps.core.indexes import in_lists
from apps.market.buckets import bucket_document, document_ticks
from apps.market.models import TickBucket

BATCH_SIZE = 5_000
PAUSE_SECONDS = 0.2


def ticks_cutoff(*, days: int, now: datetime | None = None) -> datetime:
    if days < 1:
        raise ValueError(f"days: must be at least 1, got {days}")
    return (now or timezone.now()) - timedelta(days=days)


def _straddling(collection: Any, cutoff: datetime, projection: dict[str, int] | None = None) -> Iterator[Any]:
    """Buckets with points on both sides of the cutoff (a bucket spans less than one window).

    Found by the `end` range alone (one bounded index range: buckets ending within a window after the cutoff),
    then `start` checked here: with `start` in the filter too, SecantusDB scans the whole collection."""
    window = timedelta(seconds=settings.TICK_BUCKET_SECONDS)
    fields = None if projection is None else {**projection, "start": 1}
    for document in collection.find({"end": {"$gte": cutoff, "$lt": cutoff + window}}, fields):
        if document["start"].replace(tzinfo=UTC) < cutoff:
            yield document


def ticks_older_than_count(*, cutoff: datetime) -> int:
    collection = TickBucket.collection()
    whole = sum(d["count"] for d in collection.find({"end": {"$lt": cutoff}}, {"count": 1}))
    edge = epoch_ms_ceiling(cutoff)
    straddling = _straddling(collection, cutoff, {"times": 1})
    return whole + sum(sum(1 for at in d["times"] if at < edge) for d in straddling)


def ticks_delete_older_than(
    *,
    cutoff: datetime,
    batch_size: int = BATCH_SIZE,
    pause_seconds: float = PAUSE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[int]:
    """Delete ticks recorded before `cutoff`, yielding how many ticks each batch deleted."""
    if batch_size < 1:
        raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
    collection = TickBucket.collection()
    while True:
        batch, ticks = [], 0
        for document in collection.find({"end": {"$lt": cutoff}}, {"count": 1}).limit(batch_size):
            batch.append(document["_id"])
            ticks += document["count"]
            if ticks >= batch_size:
                break
        if not batch:
            break
        for some in in_lists(batch):
            collection.delete_many({"_id": {"$in": list(some)}})
        yield ticks
        if ticks < batch_size:
            break  # that was every old bucket
        sleep(pause_seconds)
    trimmed = _trim_straddling(cutoff)
    if trimmed:
        yield trimmed


def _trim_straddling(cutoff: datetime) -> int:
    """Keep only the points at or after the cutoff in buckets the cutoff falls inside."""
    collection = TickBucket.collection()
    edge, replacements, removed = epoch_ms_ceiling(cutoff), [], 0
    for document in _straddling(collection, cutoff):
        kept = [numbered for numbered in document_ticks(document) if numbered[1].timestamp >= edge]
        removed += document["count"] - len(kept)
        newer = bucket_document(document["symbol"], kept, document_id=document["_id"])
        replacements.append(ReplaceOne({"_id": document["_id"], "count": document["count"]}, newer))
    if replacements:
        collection.bulk_write(replacements, ordered=False)
    return removed
