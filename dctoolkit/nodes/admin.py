"""The staff's view of nodes: what a node reports is read-only; drained is the one thing staff set (as ./dct drain)."""

from __future__ import annotations

from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest

from dctoolkit.nodes.draining import set_drained
from dctoolkit.nodes.models import Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "drained", "slots", "memory_total_mb", "sandbox", "last_heartbeat")
    list_editable = ("drained",)

    def get_readonly_fields(self, request: HttpRequest, obj: Node | None = None) -> list[str]:
        # State and liveness are the scheduler's (nodes/liveness.py); the rest is the node's heartbeat,
        # rewritten every DCT_HEARTBEAT_SECONDS: an edit would be wrong, then gone.
        return [field.name for field in Node._meta.fields if field.name != "drained"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a node registers itself when its worker starts

    def save_model(self, request: HttpRequest, obj: Node, form: ModelForm, change: bool) -> None:
        # Only `drained` is the staff's; the rest stays as the heartbeats write it (a save of the whole
        # row would put back what the page read).  The same rule as ./dct drain, with its audit event.
        if "drained" in form.changed_data:
            set_drained(obj.name, obj.drained, actor=request.user)
