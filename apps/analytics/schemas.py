"""The analytics app's output schema, shared by its endpoint and the dashboard's first screen."""

from datetime import datetime
from typing import Any

from ninja import Schema


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
