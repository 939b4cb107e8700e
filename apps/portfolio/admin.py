from django.contrib import admin
from django.http import HttpRequest

from apps.portfolio.models import Holding, Invoice, Order, Trader


@admin.register(Trader)
class TraderAdmin(admin.ModelAdmin):
    list_display = ["user", "cash", "starting_cash", "invoice_sequence", "created_at"]
    search_fields = ["user__username", "user__email"]
    list_filter = ["created_at"]
    raw_id_fields = ["user"]


@admin.register(Holding)
class HoldingAdmin(admin.ModelAdmin):
    list_display = ["trader", "symbol", "quantity", "average_cost", "updated_at"]
    search_fields = ["symbol"]
    list_filter = ["symbol"]
    raw_id_fields = ["trader"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Trades and confirmations are records: they change only through place_order and the invoice job."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
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
