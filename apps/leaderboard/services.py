"""Writes for the leaderboard: rebuild the precomputed snapshot (a beat job runs it every minute)."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from apps.core.cache import invalidate_namespace
from apps.leaderboard.models import LeaderboardSnapshot
from apps.portfolio.selectors import portfolio_values

logger = logging.getLogger(__name__)

SNAPSHOTS_KEPT = 3  # the newest few, so a reader mid-rebuild still finds one


@dataclass(frozen=True)
class Standing:
    username: str
    total_value: Decimal
    return_percent: Decimal


def rank(standings: Iterable[Standing]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rankings by total value and by return, best first; ties broken by username so pages never shuffle."""
    standings = list(standings)
    by_value = sorted(standings, key=lambda s: (-s.total_value, s.username))
    by_return = sorted(standings, key=lambda s: (-s.return_percent, s.username))
    return _entries(by_value), _entries(by_return)


def _entries(ordered: list[Standing]) -> list[dict[str, Any]]:
    return [
        {
            "rank": position,
            "username": s.username,
            "total_value": str(s.total_value),
            "return_percent": str(s.return_percent),
        }
        for position, s in enumerate(ordered, start=1)
    ]


def leaderboard_rebuild(*, now: datetime | None = None) -> LeaderboardSnapshot:
    """Value every trader (three scans, whatever their number), store the rankings, drop older snapshots
    and cached pages."""
    standings = [Standing(p.username, p.total_value, p.return_percent) for p in portfolio_values().values()]
    by_value, by_return = rank(standings)
    snapshot = LeaderboardSnapshot.objects.create(
        computed_at=now or timezone.now(), trader_count=len(standings), by_value=by_value, by_return=by_return
    )
    kept = list(LeaderboardSnapshot.objects.order_by("-computed_at").values_list("pk", flat=True)[:SNAPSHOTS_KEPT])
    LeaderboardSnapshot.objects.exclude(pk__in=kept).delete()
    invalidate_namespace("leaderboards")
    return snapshot
