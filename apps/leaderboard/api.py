"""GET /api/v1/leaderboard: a page of the precomputed ranking, with its age."""

from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema
from pydantic import Field

from apps.core.api_auth import ASYNC_API_AUTH
from apps.core.cache import read_cached
from apps.leaderboard.selectors import PAGE_SIZE_MAX, Ranking, leaderboard_page
from apps.leaderboard.tasks import leaderboard_rebuild_request

router = Router(tags=["leaderboard"])


class LeaderboardQuery(Schema):
    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(PAGE_SIZE_MAX, ge=1, le=PAGE_SIZE_MAX)
    by: Ranking = "value"


class LeaderboardEntry(Schema):
    rank: int
    username: str
    total_value: str
    return_percent: str


class LeaderboardOut(Schema):
    by: Ranking
    page: int
    page_size: int
    total: int
    computed_at: datetime | None
    age_seconds: float | None
    stale: bool = Field(description="True when the snapshot is older than 5 minutes; a rebuild has been requested")
    entries: list[LeaderboardEntry]


@router.get(
    "/leaderboard",
    response=LeaderboardOut,
    auth=ASYNC_API_AUTH,
    summary="Traders ranked by total value or by return",
)
async def leaderboard(request: HttpRequest, query: Query[LeaderboardQuery]) -> dict[str, Any]:
    page = await read_cached(leaderboard_page, by=query.by, page=query.page, page_size=query.page_size)
    now = timezone.now()
    stale = page.is_stale(now)
    if stale:
        await sync_to_async(leaderboard_rebuild_request)()
    age = page.age(now)
    return {
        "by": page.by,
        "page": page.page,
        "page_size": page.page_size,
        "total": page.total,
        "computed_at": page.computed_at,
        "age_seconds": None if age is None else round(age.total_seconds(), 3),
        "stale": stale,
        "entries": page.entries,
    }
