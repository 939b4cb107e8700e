"""Reads for the leaderboard: pages of the newest precomputed snapshot, through the cache.

A request never ranks traders itself (Property 11): it reads the snapshot the
beat job wrote. A cached page lives only until its snapshot is 5 minutes old,
so a served page is never older than that; an older snapshot is served marked
stale while a rebuild is requested.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from django.utils import timezone

from apps.core.cache import cached, ttl_for
from apps.core.codec import cacheable
from apps.leaderboard.models import LeaderboardSnapshot

MAX_AGE = timedelta(minutes=5)  # Property 11
PAGE_SIZE_MAX = 100  # Property 3
STALE_RETRY_SECONDS = 5  # how long a page of a stale (or missing) snapshot stays cached
Ranking = Literal["value", "return"]


@cacheable
@dataclass(frozen=True)
class LeaderboardPage:
    by: Ranking
    page: int
    page_size: int
    total: int
    computed_at: datetime | None
    entries: list[dict[str, Any]] = field(default_factory=list)

    def age(self, now: datetime) -> timedelta | None:
        return None if self.computed_at is None else now - self.computed_at

    def is_stale(self, now: datetime) -> bool:
        age = self.age(now)
        return age is None or age > MAX_AGE


def _load_page(by: Ranking, page: int, page_size: int) -> LeaderboardPage:
    snapshot = LeaderboardSnapshot.objects.order_by("-computed_at").first()
    if snapshot is None:
        return LeaderboardPage(by, page, page_size, 0, None)
    ranking = snapshot.by_value if by == "value" else snapshot.by_return
    start = (page - 1) * page_size
    return LeaderboardPage(by, page, page_size, len(ranking), snapshot.computed_at, ranking[start : start + page_size])


def page_ttl(page: LeaderboardPage, now: datetime | None = None) -> int:
    """Seconds a page may stay cached: until its snapshot turns MAX_AGE old, within the namespace's TTL."""
    age = page.age(now or timezone.now())
    if age is None or age >= MAX_AGE:
        return STALE_RETRY_SECONDS
    return max(1, min(ttl_for("leaderboards"), int((MAX_AGE - age).total_seconds())))


def leaderboard_page(*, by: Ranking = "value", page: int = 1, page_size: int = PAGE_SIZE_MAX) -> LeaderboardPage:
    if not 1 <= page_size <= PAGE_SIZE_MAX:
        raise ValueError(f"page_size: must be between 1 and {PAGE_SIZE_MAX}, got {page_size}")
    if page < 1:
        raise ValueError(f"page: must be at least 1, got {page}")
    return cached("leaderboards", f"{by}:{page}:{page_size}", lambda: _load_page(by, page, page_size), ttl=page_ttl)


def leaderboard_top(*, limit: int = 10) -> LeaderboardPage:
    """The best `limit` traders by total value (the dashboard's panel)."""
    return leaderboard_page(by="value", page=1, page_size=limit)


def top_by_return(*, limit: int) -> list[dict[str, Any]]:
    """The newest snapshot's best `limit` traders by return, read from storage (analytics' refresh)."""
    snapshot = LeaderboardSnapshot.objects.order_by("-computed_at").only("by_return").first()
    return snapshot.by_return[:limit] if snapshot else []
