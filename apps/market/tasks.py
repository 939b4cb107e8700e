"""Market maintenance jobs: price-history cleanup (daily, from CELERY_BEAT_SCHEDULE)."""

import logging

from celery import shared_task
from django.conf import settings

from apps.core.jobs import ReliableTask
from apps.market.retention import ticks_cutoff, ticks_delete_older_than

logger = logging.getLogger(__name__)


@shared_task(base=ReliableTask, name="market.cleanup_prices")
def cleanup_prices(days: int | None = None) -> int:
    """Daily: delete ticks older than the retention in pauses-between batches. Rerunning is harmless."""
    cutoff = ticks_cutoff(days=days or settings.PRICE_HISTORY_RETENTION_DAYS)
    deleted = sum(ticks_delete_older_than(cutoff=cutoff))
    logger.info("price history: deleted %s ticks recorded before %s", deleted, cutoff.isoformat())
    return deleted
