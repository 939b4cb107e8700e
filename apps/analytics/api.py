"""GET /api/v1/analytics/summary: the precomputed market summary."""

from typing import Any

from django.http import HttpRequest
from ninja import Router

from apps.analytics.schemas import AnalyticsOut
from apps.analytics.selectors import analytics_summary

router = Router(tags=["analytics"])


@router.get("/analytics/summary", response=AnalyticsOut, summary="Market totals, movers and sectors")
def summary(request: HttpRequest) -> dict[str, Any]:
    return analytics_summary()
