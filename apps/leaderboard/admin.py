from django.contrib import admin

from apps.leaderboard.models import LeaderboardSnapshot


@admin.register(LeaderboardSnapshot)
class LeaderboardSnapshotAdmin(admin.ModelAdmin):
    list_display = ["computed_at", "trader_count"]
    list_filter = ["computed_at"]
    readonly_fields = ["computed_at", "trader_count", "by_value", "by_return"]

    def has_add_permission(self, request: object) -> bool:
        return False  # snapshots are computed by the rebuild job
