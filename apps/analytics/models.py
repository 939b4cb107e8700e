"""Market analytics, kept incrementally: running trade totals advanced from a watermark, and the summary served."""

from decimal import Decimal

from django.db import models


class AnalyticsState(models.Model):
    """One document ("market"): the counters and the precomputed summary (Property 13).

    `watermark` is the ObjectId (hex) of the newest order already counted; each
    refresh reads only orders after it (an `_id` range), never the whole history.
    """

    name = models.CharField(max_length=20, unique=True, default="market")
    watermark = models.CharField(max_length=24, blank=True)
    total_trades = models.PositiveBigIntegerField(default=0)
    total_volume = models.PositiveBigIntegerField(default=0, help_text="Shares traded.")
    total_value = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("0.00"))
    trades_by_symbol = models.JSONField(default=dict)
    volume_by_symbol = models.JSONField(default=dict)
    last_trade_by_trader = models.JSONField(default=dict, help_text="Trader id -> last trade time (24 h kept).")
    summary = models.JSONField(default=dict)
    computed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Analytics ({self.name}) at {self.computed_at}"
