"""Price-history retention (Property 29): delete ticks older than PRICE_HISTORY_RETENTION_DAYS.

Deletes run in bounded batches by `_id` (the ids of up to `batch_size` old
ticks, found through the recorded_at index, then one delete of exactly those),
with a pause between batches so the persister's bulk inserts are never stuck
behind one long delete (a single `delete_many` of 50k ticks takes ~6 s on the
embedded database).
"""

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from django.utils import timezone

from apps.market.models import PriceTick

BATCH_SIZE = 5_000
PAUSE_SECONDS = 0.2


def ticks_cutoff(*, days: int, now: datetime | None = None) -> datetime:
    if days < 1:
        raise ValueError(f"days: must be at least 1, got {days}")
    return (now or timezone.now()) - timedelta(days=days)


def ticks_older_than_count(*, cutoff: datetime) -> int:
    return PriceTick.objects.filter(recorded_at__lt=cutoff).count()


def ticks_delete_older_than(
    *,
    cutoff: datetime,
    batch_size: int = BATCH_SIZE,
    pause_seconds: float = PAUSE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[int]:
    """Delete ticks recorded before `cutoff`, yielding the size of each batch deleted."""
    if batch_size < 1:
        raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
    while True:
        ids = list(PriceTick.objects.filter(recorded_at__lt=cutoff).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return
        deleted, _ = PriceTick.objects.filter(pk__in=ids).delete()
        yield deleted
        if len(ids) < batch_size:
            return
        sleep(pause_seconds)
