from django.contrib import admin

from .models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "state", "node", "attempts", "exit_code", "submitted_at")
    list_filter = ("state",)
    search_fields = ("name", "owner__username")
    raw_id_fields = ("submission", "owner", "node")
