"""Cache warm-up: read the hot keys once so the first requests after a start hit the cache."""

import logging
from collections.abc import Callable

from apps.analytics.selectors import analytics_summary
from apps.leaderboard.selectors import leaderboard_page

logger = logging.getLogger(__name__)

WARMERS: dict[str, Callable[[], object]] = {
    "leaderboards:value:1": lambda: leaderboard_page(by="value", page=1),
    "leaderboards:return:1": lambda: leaderboard_page(by="return", page=1),
    "analytics:summary": analytics_summary,
}


def cache_warm(progress: Callable[[str], None] = logger.info) -> int:
    """Load every warmed key through the cache; returns how many were loaded."""
    for position, (name, warm) in enumerate(WARMERS.items(), start=1):
        warm()
        progress(f"[{position}/{len(WARMERS)}] {name}")
    return len(WARMERS)
