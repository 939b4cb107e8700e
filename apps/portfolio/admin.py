from django.contrib import admin

from apps.portfolio.models import Trader


@admin.register(Trader)
class TraderAdmin(admin.ModelAdmin):
    list_display = ["user", "cash", "starting_cash", "created_at"]
    search_fields = ["user__username", "user__email"]
    list_filter = ["created_at"]
    raw_id_fields = ["user"]
