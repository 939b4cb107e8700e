"""Leaderboard jobs: thin wrappers around the service."""

from celery import shared_task

from apps.core.jobs import ReliableTask
from apps.leaderboard.services import leaderboard_rebuild


@shared_task(base=ReliableTask, name="leaderboard.rebuild", max_retries=2)
def rebuild_leaderboard() -> int:
    """Recompute the rankings (beat, every minute). Idempotent: a rerun writes a newer snapshot."""
    return leaderboard_rebuild().trader_count
