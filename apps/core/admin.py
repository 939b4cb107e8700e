from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.jobs import dead_letters_replay
from apps.core.models import ApiToken, DeadLetter


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at"]
    search_fields = ["prefix", "user__username", "name"]
    list_filter = ["created_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]
    raw_id_fields = ["user"]

    def has_add_permission(self, request: object) -> bool:
        return False  # tokens are issued by `manage.py create_trader`, which shows them once


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["task_name", "task_id", "attempts", "failed_at", "replayed_at", "error"]
    search_fields = ["task_name", "task_id", "error"]
    list_filter = ["task_name", "failed_at", "replayed_at"]
    readonly_fields = [
        "task_name",
        "task_id",
        "args",
        "kwargs",
        "error",
        "traceback",
        "attempts",
        "failed_at",
        "replayed_at",
    ]
    actions = ["replay"]

    def has_add_permission(self, request: object) -> bool:
        return False  # written by ReliableTask after a job's last attempt

    @admin.action(description="Replay the selected jobs (send them again)")
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        sent = dead_letters_replay(queryset)
        level = messages.SUCCESS if sent == queryset.count() else messages.WARNING
        self.message_user(request, f"Replayed {sent} of {queryset.count()} job(s).", level)
