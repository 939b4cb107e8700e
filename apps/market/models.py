"""The tradable universe."""

from django.db import models


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
