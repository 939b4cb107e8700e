"""The tradable universe."""

from typing import Any, cast

from django.db import connections, models, router
from django_mongodb_backend.base import DatabaseWrapper
from django_mongodb_backend.fields import ArrayField
from pymongo.collection import Collection


class Sector(models.TextChoices):
    TECHNOLOGY = "technology", "Technology"
    HEALTHCARE = "healthcare", "Healthcare"
    FINANCIALS = "financials", "Financials"
    ENERGY = "energy", "Energy"
    CONSUMER = "consumer", "Consumer"
    INDUSTRIALS = "industrials", "Industrials"
    UTILITIES = "utilities", "Utilities"
    MATERIALS = "materials", "Materials"
    REAL_ESTATE = "real_estate", "Real estate"
    COMMUNICATION = "communication", "Communication"


class Symbol(models.Model):
    ticker = models.CharField(max_length=10, unique=True)
    name = models.CharField(max_length=120)
    sector = models.CharField(max_length=20, choices=Sector.choices)
    initial_price = models.DecimalField(max_digits=12, decimal_places=2)
    active = models.BooleanField(default=True, help_text="Inactive (halted) symbols cannot be traded.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticker"]
        indexes = [models.Index(fields=["sector", "ticker"], name="symbol_sector_ticker")]

    def __str__(self) -> str:
        return self.ticker


class TickBucket(models.Model):
    """One symbol's stored ticks in one time bucket (MongoDB's bucket pattern; ADR 0005).

    Written only by the persister, one bulk insert per batch of closed buckets,
    on the "market" database alias (trading/db_router.py). The id is made from
    the bucket's first point, so a re-delivered bucket is recognised and merged
    rather than stored twice (Property 36). Points are parallel arrays in
    (time, tick id) order; prices are floats on the 0.01 grid (apps/market/ticks.py).
    """

    id = models.CharField(primary_key=True, db_column="_id", max_length=120, help_text="symbol|window start (ms)")
    symbol = models.CharField(max_length=10)
    start = models.DateTimeField(help_text="Time of the first point.")
    end = models.DateTimeField(help_text="Time of the last point.")
    count = models.PositiveIntegerField()
    tick_ids = ArrayField(models.CharField(max_length=64))
    times = ArrayField(models.BigIntegerField(), help_text="Milliseconds since the epoch.")
    prices = ArrayField(models.FloatField())
    previous_closes = ArrayField(models.FloatField())
    volumes = ArrayField(models.BigIntegerField())

    class Meta:
        indexes = [
            # History of one symbol: buckets starting in a bounded window (Property 1).
            models.Index(fields=["symbol", "start"], name="tickbucket_symbol_start"),
            # Retention: whole buckets older than the cutoff (Property 29).
            models.Index(fields=["end"], name="tickbucket_end"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.count} ticks from {self.start:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def collection(cls) -> Collection[dict[str, Any]]:
        """The raw collection on the market alias, for the hot paths (bulk inserts, bounded history reads)."""
        return cast(DatabaseWrapper, connections[router.db_for_write(cls)]).get_collection(cls._meta.db_table)
