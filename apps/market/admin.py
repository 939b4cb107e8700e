from django.contrib import admin

from apps.market.models import Symbol


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = ["ticker", "name", "sector", "initial_price", "active"]
    search_fields = ["ticker", "name"]
    list_filter = ["sector", "active"]
    list_editable = ["active"]
