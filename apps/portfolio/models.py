"""Traders, their virtual cash, holdings, orders and invoices. Money is Decimal, never float."""

from decimal import Decimal

from bson import ObjectId
from django.conf import settings
from django.db import models

from apps.core.indexes import LookupIndex


def _starting_cash() -> Decimal:
    return Decimal(settings.TRADER_STARTING_CASH)


class Trader(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trader")
    user_id: ObjectId
    cash = models.DecimalField(max_digits=16, decimal_places=2, default=_starting_cash)
    starting_cash = models.DecimalField(max_digits=16, decimal_places=2, default=_starting_cash)
    # The last invoice number issued; bumped in the order transaction with the cash change.
    invoice_sequence = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Not user__username: sorting by a joined field makes select_related("user") come back empty on
        # SecantusDB (pinned in tests/portfolio/test_selectors.py).
        ordering = ["-created_at"]
        indexes = [
            LookupIndex(fields=["user", "created_at"], name="trader_user_lookup"),
            # The order's conditional cash decrement filters on _id and cash.
            LookupIndex(fields=["id", "cash"], name="trader_cash_guard"),
        ]

    def __str__(self) -> str:
        return str(self.user)


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class Holding(models.Model):
    """How many shares of one symbol a trader owns, and what they paid on average."""

    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="holdings")
    trader_id: ObjectId
    symbol = models.CharField(max_length=10)
    quantity = models.PositiveIntegerField()
    average_cost = models.DecimalField(max_digits=16, decimal_places=4)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [models.UniqueConstraint(fields=["trader", "symbol"], name="holding_trader_symbol")]
        indexes = [LookupIndex(fields=["symbol", "trader", "quantity"], name="holding_symbol_trader_quantity")]

    def __str__(self) -> str:
        return f"{self.trader} {self.quantity} {self.symbol}"


class Order(models.Model):
    """One executed market order (the trade). (trader, client_order_id) is the exactly-once key."""

    class Status(models.TextChoices):
        FILLED = "filled", "Filled"

    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="orders")
    trader_id: ObjectId
    client_order_id = models.CharField(max_length=48)
    symbol = models.CharField(max_length=10)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=16, decimal_places=2)
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FILLED)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["trader", "client_order_id"], name="order_trader_client_order_id"),
        ]
        indexes = [
            models.Index(fields=["trader", "-created_at", "-id"], name="order_trader_newest"),
            LookupIndex(fields=["client_order_id", "trader"], name="order_client_order_id_lookup"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} @ {self.price}"


class Invoice(models.Model):
    """The confirmation of one trade: numbered per trader, signed, rendered to PDF in the background."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="invoice")
    order_id: ObjectId
    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="invoices")
    trader_id: ObjectId
    number = models.PositiveIntegerField(help_text="Sequential per trader, from 1.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    verification_code = models.CharField(max_length=64, unique=True)
    pdf = models.BinaryField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    resent_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the outbox sweeper last sent its job again."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["trader", "number"], name="invoice_trader_number")]
        indexes = [
            models.Index(fields=["status", "created_at"], name="invoice_outbox"),  # the sweeper's query
            LookupIndex(fields=["order", "status"], name="invoice_order_lookup"),
            LookupIndex(fields=["verification_code", "trader"], name="invoice_code_lookup"),
        ]

    def __str__(self) -> str:
        return f"Invoice {self.number} of {self.trader}"
