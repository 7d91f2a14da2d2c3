from django.contrib import admin

from .models import Account, DailyUsage


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    """Staff adjust a user's fair share here (2.0 = twice the share of a default user)."""

    list_display = ("user", "share", "usage", "usage_at")
    list_editable = ("share",)
    search_fields = ("user__username",)


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    list_display = ("user", "day", "cpu_seconds", "jobs")
    list_filter = ("day",)
