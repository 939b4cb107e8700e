"""Leaderboard jobs: thin wrappers around the service, and the throttled request for a rebuild.

`leaderboard_rebuild_request` lives beside the task it enqueues (the service module must not import
its task module: that was a cycle, services <-> tasks)."""

import logging

import redis
from celery import shared_task
from kombu.exceptions import OperationalError

from apps.core.jobs import ReliableTask
from apps.core.redis import key, redis_client
from apps.leaderboard.services import leaderboard_rebuild

logger = logging.getLogger(__name__)

REBUILD_REQUEST_SECONDS = 60  # a stale leaderboard enqueues at most one rebuild a minute


@shared_task(base=ReliableTask, name="leaderboard.rebuild", max_retries=2)
def rebuild_leaderboard() -> int:
    """Recompute the rankings (beat, every minute). Idempotent: a rerun writes a newer snapshot."""
    return leaderboard_rebuild().trader_count


def leaderboard_rebuild_request() -> bool:
    """Enqueue a rebuild unless one was requested within the last minute; True when one was enqueued."""
    try:
        if not redis_client().set(key("leaderboard", "rebuild-requested"), 1, nx=True, ex=REBUILD_REQUEST_SECONDS):
            return False
        rebuild_leaderboard.apply_async(retry=False)
    except (redis.RedisError, OperationalError) as error:
        # The beat job will rebuild once Redis is back; the reader still gets the (marked stale) ranking.
        logger.warning("leaderboard: could not request a rebuild: %s", error)
        return False
    return True
