from django.contrib import admin

from apps.core.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at"]
    search_fields = ["prefix", "user__username", "name"]
    list_filter = ["created_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]
    raw_id_fields = ["user"]

    def has_add_permission(self, request: object) -> bool:
        return False  # tokens are issued by `manage.py create_trader`, which shows them once
