"""Reads for analytics: the precomputed summary, through the cache (Property 13: never computed on a request)."""

from typing import Any

from apps.analytics.models import AnalyticsState
from apps.core.cache import cached


def _load_summary() -> dict[str, Any]:
    state = AnalyticsState.objects.filter(name="market").only("summary", "computed_at").first()
    if state is None or state.computed_at is None:
        return {"computed_at": None}
    return {**state.summary, "computed_at": state.computed_at}


def analytics_summary() -> dict[str, Any]:
    """The newest summary with its `computed_at` (None until the first refresh ran)."""
    return cached("analytics", "summary", _load_summary)
