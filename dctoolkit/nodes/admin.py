from django.contrib import admin

from .models import Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "drained", "slots", "memory_total_mb", "sandbox", "last_heartbeat")
    list_editable = ("drained",)
