from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.monitoring.models import Alert, AlertRule, MetricSample


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["key", "figure", "threshold", "enabled", "description"]
    list_editable = ["threshold", "enabled"]
    search_fields = ["key", "figure"]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["rule", "opened_at", "resolved_at", "last_value", "peak_value", "message"]
    list_filter = ["rule", "resolved_at"]
    readonly_fields = ["rule", "opened_at", "resolved_at", "last_value", "peak_value", "message"]
    list_select_related = ["rule"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # alerts are raised by the evaluator, not typed in


@admin.register(MetricSample)
class MetricSampleAdmin(admin.ModelAdmin):
    list_display = ["recorded_at", "resolution", "degraded"]
    list_filter = ["resolution"]
    readonly_fields = ["recorded_at", "resolution", "figures", "counters", "degraded"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
