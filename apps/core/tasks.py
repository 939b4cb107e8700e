"""Maintenance jobs: cache warm-up (also when a worker starts) and price-history cleanup."""

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from apps.core.cache import redis_memory_status, redis_policy_problem
from apps.core.jobs import ReliableTask
from apps.core.warmup import cache_warm
from apps.market.retention import ticks_cutoff, ticks_delete_older_than

logger = logging.getLogger(__name__)


@shared_task(base=ReliableTask, name="core.warm_cache", max_retries=2)
def warm_cache() -> int:
    return cache_warm()


@shared_task(base=ReliableTask, name="market.cleanup_prices")
def cleanup_prices(days: int | None = None) -> int:
    """Daily: delete ticks older than the retention in pauses-between batches. Rerunning is harmless."""
    cutoff = ticks_cutoff(days=days or settings.PRICE_HISTORY_RETENTION_DAYS)
    deleted = sum(ticks_delete_older_than(cutoff=cutoff))
    logger.info("price history: deleted %s ticks recorded before %s", deleted, cutoff.isoformat())
    return deleted


@worker_ready.connect
def warm_after_start(**kwargs: Any) -> None:
    """A started worker rebuilds the precomputed reads and warms the cache, and says if Redis cannot evict."""
    try:
        problem = redis_policy_problem(redis_memory_status())
    except Exception as error:  # a start-up hint must never stop the worker
        problem = f"could not read Redis memory settings: {error}"
    if problem:
        logger.warning("Redis: %s", problem)
    from apps.analytics.tasks import refresh_analytics
    from apps.leaderboard.tasks import rebuild_leaderboard

    (rebuild_leaderboard.si() | refresh_analytics.si() | warm_cache.si()).apply_async()
