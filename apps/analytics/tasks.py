"""Analytics jobs: thin wrappers around the service."""

from celery import shared_task

from apps.analytics.services import analytics_refresh
from apps.core.jobs import ReliableTask


@shared_task(base=ReliableTask, name="analytics.refresh", max_retries=2)
def refresh_analytics() -> int:
    """Advance the counters past new trades and rebuild the summary (beat, every minute)."""
    return analytics_refresh().total_trades
