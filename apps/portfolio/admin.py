"""Admin for traders, holdings, orders and invoices.

The order engine is the only writer of cash and holdings (ADR 0008): saving a trader's cash or a holding
here sends the engine an adjustment (`account_adjust`) and shows its refusal, if any; nothing is saved
behind its back. Orders and invoices are records and read-only.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.portfolio.models import EngineShard, Holding, Invoice, Order, Trader
from apps.portfolio.services import OrderRejected, account_adjust


def _adjusted(request: HttpRequest, trader: Trader, **change: Any) -> None:
    try:
        account_adjust(trader=trader, note=f"admin: {request.user}", **change)
    except OrderRejected as refused:
        messages.error(request, f"Not changed: {refused.message}")


@admin.register(Trader)
class TraderAdmin(admin.ModelAdmin):
    list_display = ["user", "cash", "reserved_cash", "starting_cash", "invoice_sequence", "created_at"]
    search_fields = ["user__username", "user__email"]
    list_filter = ["created_at"]
    fields = ["user", "cash", "reserved_cash", "starting_cash", "invoice_sequence"]
    readonly_fields = ["user", "reserved_cash", "starting_cash", "invoice_sequence"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # `manage.py create_trader`, or a user's first order

    def save_model(self, request: HttpRequest, obj: Trader, form: Any, change: bool) -> None:
        stored = Trader.objects.get(pk=obj.pk)
        if obj.cash != stored.cash:
            _adjusted(request, stored, cash=obj.cash - stored.cash)


@admin.register(Holding)
class HoldingAdmin(admin.ModelAdmin):
    list_display = ["trader", "symbol", "quantity", "reserved", "average_cost", "updated_at"]
    search_fields = ["symbol"]
    list_filter = ["symbol"]
    raw_id_fields = ["trader"]

    def save_model(self, request: HttpRequest, obj: Holding, form: Any, change: bool) -> None:
        symbol = obj.symbol.strip().upper()
        if change:
            symbol = Holding.objects.get(pk=obj.pk).symbol  # a holding's symbol is its identity
        _adjusted(request, obj.trader, positions={symbol: (obj.quantity, obj.average_cost)})

    def delete_model(self, request: HttpRequest, obj: Holding) -> None:
        _adjusted(request, obj.trader, positions={obj.symbol: (0, obj.average_cost)})

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Holding]) -> None:
        for holding in queryset.select_related("trader"):
            self.delete_model(request, holding)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Trades, confirmations and the engine's checkpoints are records: only the engine writes them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "trader",
        "side",
        "quantity",
        "symbol",
        "price",
        "amount",
        "status",
        "client_order_id",
    ]
    search_fields = ["symbol", "client_order_id"]
    list_filter = ["side", "status", "created_at"]
    raw_id_fields = ["trader"]


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["number", "trader", "order", "status", "created_at", "ready_at"]
    search_fields = ["verification_code"]
    list_filter = ["status", "created_at"]
    exclude = ["pdf"]
    raw_id_fields = ["trader", "order"]


@admin.register(EngineShard)
class EngineShardAdmin(ReadOnlyAdmin):
    list_display = ["shard", "epoch", "last_entry", "updated_at"]
