from typing import cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from apps.market.models import Symbol, TickBucket


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = ["ticker", "name", "sector", "initial_price", "active"]
    search_fields = ["ticker", "name"]
    list_filter = ["sector", "active"]
    list_editable = ["active"]


class EstimatedCountPaginator(Paginator):
    """Pages without counting a huge collection: the collection's metadata count, or a capped count when filtered."""

    FILTERED_COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            return int(TickBucket.collection().estimated_document_count())
        return len(
            cast(QuerySet[TickBucket], queryset).order_by().values_list("pk", flat=True)[: self.FILTERED_COUNT_CAP]
        )


@admin.register(TickBucket)
class TickBucketAdmin(admin.ModelAdmin):
    """Read-only: buckets are written by the persister alone (each holds one symbol's ticks of one window)."""

    list_display = ["start", "end", "symbol", "count", "id"]
    search_fields = ["=symbol"]  # exact matches only: they use the index
    ordering = ["-start"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # retention (cleanup) deletes old ticks in bounded batches, never by hand
