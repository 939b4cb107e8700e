"""Cache warm-up (also when a worker starts: the precomputed reads are rebuilt first).

The task keeps its name `core.warm_cache` (beat entries and queued jobs name it) though it moved here
from apps/core with the warm-up it runs."""

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from apps.core.jobs import ReliableTask
from apps.core.redis import redis_memory_status, redis_policy_problem
from apps.dashboard.warmup import cache_warm

logger = logging.getLogger(__name__)


@shared_task(base=ReliableTask, name="core.warm_cache", max_retries=2)
def warm_cache() -> int:
    return cache_warm()


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
