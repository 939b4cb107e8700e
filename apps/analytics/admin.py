from django.contrib import admin

from apps.analytics.models import AnalyticsState


@admin.register(AnalyticsState)
class AnalyticsStateAdmin(admin.ModelAdmin):
    list_display = ["name", "computed_at", "total_trades", "total_volume", "total_value"]
    readonly_fields = ["watermark", "summary", "computed_at"]

    def has_add_permission(self, request: object) -> bool:
        return False  # maintained by the refresh job
