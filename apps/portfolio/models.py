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
    # Cash held by resting buy orders (limit price x quantity); buying power = cash - reserved_cash >= 0.
    reserved_cash = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("0.00"), editable=False)
    # The last invoice number issued; bumped in the order transaction with the cash change.
    invoice_sequence = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Not user__username: sorting by a joined field makes select_related("user") come back empty on
        # SecantusDB (pinned in tests/portfolio/test_selectors.py).
        ordering = ["-created_at"]
        indexes = [
            LookupIndex(fields=["user", "created_at"], name="trader_user_lookup"),
        ]

    def __str__(self) -> str:
        return str(self.user)


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class Holding(models.Model):
    """How many shares of one symbol a trader owns, and what they paid on average."""

    # No index of its own: holding_trader_lookup starts with the trader.
    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="holdings", db_index=False)
    trader_id: ObjectId
    symbol = models.CharField(max_length=10)
    quantity = models.PositiveIntegerField()
    average_cost = models.DecimalField(max_digits=16, decimal_places=4)
    # Shares held by resting sell orders; only quantity - reserved can be sold.
    reserved = models.PositiveIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [models.UniqueConstraint(fields=["trader", "symbol"], name="holding_trader_symbol")]
        # The engine writes a holding by (trader, symbol); the portfolio reads a trader's holdings.
        indexes = [LookupIndex(fields=["trader", "symbol", "quantity"], name="holding_trader_lookup")]

    def __str__(self) -> str:
        return f"{self.trader} {self.quantity} {self.symbol}"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"
    STOP = "stop", "Stop"
    STOP_LIMIT = "stop_limit", "Stop limit"


class TimeInForce(models.TextChoices):
    DAY = "day", "Day"
    GTC = "gtc", "Good till cancelled"
    IOC = "ioc", "Immediate or cancel"
    FOK = "fok", "Fill or kill"


class Order(models.Model):
    """An order: executed at once (a trade), or resting until a tick crosses it, it is cancelled or it expires.

    (trader, client_order_id) is the exactly-once key. price and amount are the fill's; empty while open.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"

    # No index of its own: order_trader_newest starts with the trader (every index an order carries costs the
    # embedded database ~0.06 ms of CPU an insert; ADR 0008).
    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="orders", db_index=False)
    trader_id: ObjectId
    client_order_id = models.CharField(max_length=48)
    symbol = models.CharField(max_length=10)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.PositiveIntegerField()
    type = models.CharField(max_length=10, choices=OrderType.choices, default=OrderType.MARKET)
    limit_price = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    stop_price = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.DAY)
    triggered = models.BooleanField(default=False, help_text="A stop limit whose stop price was crossed.")
    reserved_cash = models.DecimalField(
        max_digits=18, decimal_places=2, default=Decimal("0.00"), help_text="Cash a resting buy holds."
    )
    price = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    amount = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FILLED)
    reason = models.CharField(max_length=40, blank=True, default="", help_text="Why it was cancelled, if not asked.")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True, help_text="A resting day order's end.")
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When it was filled, cancelled or expired.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["trader", "client_order_id"], name="order_trader_client_order_id"),
        ]
        indexes = [
            models.Index(fields=["trader", "-created_at", "-id"], name="order_trader_newest"),
            LookupIndex(fields=["client_order_id", "trader"], name="order_client_order_id_lookup"),
            # The matcher's book rebuild (every open order) and the expiry sweep (open, expires_at <= now).
            models.Index(fields=["status", "expires_at"], name="order_open_expiry"),
        ]

    def __str__(self) -> str:
        if self.price is not None:
            return f"{self.side} {self.quantity} {self.symbol} @ {self.price}"
        return f"{self.side} {self.quantity} {self.symbol} {self.type} ({self.status})"


class Invoice(models.Model):
    """The confirmation of one trade: numbered per trader, signed in the batch, rendered to PDF on first download."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="invoice")
    order_id: ObjectId
    # No index of its own: nothing looks invoices up by trader alone (the number's unique index guards them).
    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="invoices", db_index=False)
    trader_id: ObjectId
    number = models.PositiveIntegerField(help_text="Sequential per trader, from 1.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    verification_code = models.CharField(max_length=64, unique=True)
    pdf = models.BinaryField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["trader", "number"], name="invoice_trader_number")]
        indexes = [
            LookupIndex(fields=["order", "status"], name="invoice_order_lookup"),
            LookupIndex(fields=["verification_code", "trader"], name="invoice_code_lookup"),
        ]

    def __str__(self) -> str:
        return f"Invoice {self.number} of {self.trader}"


class EngineShard(models.Model):
    """One order engine shard's checkpoint (ADR 0008): written in every batch's transaction by the engine alone.

    `epoch` fences a second engine of the same shard (each start takes the next; a batch commits only under
    its own), `last_entry` is the newest stream entry whose effects are committed (a re-read entry up to it
    is answered, not decided again)."""

    shard = models.PositiveSmallIntegerField(unique=True)
    epoch = models.PositiveIntegerField(default=0)
    last_entry = models.CharField(max_length=40, default="0-0")
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"engine shard {self.shard} (epoch {self.epoch}, at {self.last_entry})"
