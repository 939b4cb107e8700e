"""The tradable universe."""

from typing import Any, cast

from django.db import connection, models
from django_mongodb_backend.base import DatabaseWrapper
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


class PriceTick(models.Model):
    """One stored tick. Written only by the persister (bulk inserts from the tick stream).

    `symbol` is the ticker string, not a foreign key: the hot path never joins.
    Prices are Decimal (stored as Decimal128): exact on the 0.01 grid, and the
    same type money code uses when a stored tick stands in for a missing quote.
    """

    tick_id = models.CharField(max_length=64, unique=True, help_text="Run id and sequence, assigned by the simulator.")
    symbol = models.CharField(max_length=10)
    price = models.DecimalField(max_digits=14, decimal_places=2)
    previous_close = models.DecimalField(max_digits=14, decimal_places=2)
    volume = models.BigIntegerField(help_text="Shares traded in the session so far.")
    recorded_at = models.DateTimeField()

    class Meta:
        indexes = [
            # Property 1: history of one symbol, newest first; and time-window scans over all symbols.
            models.Index(fields=["symbol", "-recorded_at"], name="pricetick_symbol_recorded"),
            models.Index(fields=["-recorded_at"], name="pricetick_recorded"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.price} @ {self.recorded_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def collection(cls) -> Collection[dict[str, Any]]:
        """The raw collection, for the hot paths (bulk inserts, bounded history reads)."""
        return cast(DatabaseWrapper, connection).get_collection(cls._meta.db_table)
