"""Traders and their virtual cash. Money is Decimal, never float."""

from decimal import Decimal

from django.conf import settings
from django.db import models


def _starting_cash() -> Decimal:
    return Decimal(settings.TRADER_STARTING_CASH)


class Trader(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trader")
    cash = models.DecimalField(max_digits=16, decimal_places=2, default=_starting_cash)
    starting_cash = models.DecimalField(max_digits=16, decimal_places=2, default=_starting_cash)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__username"]

    def __str__(self) -> str:
        return str(self.user)
