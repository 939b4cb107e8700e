"""GET /api/v1/analytics/summary: the precomputed market summary."""

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from apps.analytics.selectors import analytics_summary

router = Router(tags=["analytics"])


class AnalyticsOut(Schema):
    computed_at: datetime | None
    total_trades: int = 0
    total_volume: int = 0
    total_value: str = "0.00"
    active_traders_24h: int = 0
    top_performers: list[dict[str, Any]] = []
    most_traded: list[dict[str, Any]] = []
    most_volatile: list[dict[str, Any]] = []
    sectors: list[dict[str, Any]] = []


@router.get("/analytics/summary", response=AnalyticsOut, summary="Market totals, movers and sectors")
def summary(request: HttpRequest) -> dict[str, Any]:
    return analytics_summary()
