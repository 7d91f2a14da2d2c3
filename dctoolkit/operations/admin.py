"""The admin's side of the audit trail: its events, read-only, and `AuditedAdmin`, which records the
admin's own changes (a user's share, a user's staff flag, ...) as events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib import admin
from django.db import models, transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from dctoolkit.operations import audit
from dctoolkit.operations.models import AuditAction, AuditEvent


def plain(value: Any) -> Any:
    """A form value as JSON keeps it: a row by its name, several rows as a list of names."""
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, QuerySet | list | tuple | set):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def field_values(values: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    """The values of `fields` for the audit trail; a password's never (only that it changed)."""
    return {f: "(changed)" if "password" in f else plain(values.get(f)) for f in fields}


class AuditedAdmin(admin.ModelAdmin):
    """A ModelAdmin whose saves and deletions are audit events: add, change (the changed fields, before
    and after) and delete, each in the transaction of its write."""

    def audit_action(self, changed: list[str], change: bool) -> str:
        """The action an edit of `changed` fields is recorded as (a subclass names its own, e.g. share)."""
        return AuditAction.CHANGE if change else AuditAction.ADD

    def save_model(self, request: HttpRequest, obj: models.Model, form: ModelForm, change: bool) -> None:
        changed = list(form.changed_data)
        before = field_values(form.initial, changed)
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if changed or not change:
                after = field_values(form.cleaned_data, changed)
                audit.record(request.user, self.audit_action(changed, change), obj, before=before, after=after)

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        with transaction.atomic():
            audit.record(request.user, AuditAction.DELETE, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():
            audit.record_each(request.user, AuditAction.DELETE, [(obj, {}) for obj in queryset])
            super().delete_queryset(request, queryset)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail as it was written: nobody edits, adds or deletes an event here."""

    list_display = ("at", "actor_name", "action", "target_kind", "target")
    list_filter = ("action", "target_kind")
    search_fields = ("actor_name", "target")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
