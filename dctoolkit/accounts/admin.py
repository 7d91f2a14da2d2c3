from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.http import HttpRequest

from dctoolkit.accounts.granting import hidden_folders
from dctoolkit.accounts.grants import GrantPathError, canonical_folder
from dctoolkit.accounts.group_changes import record_members
from dctoolkit.accounts.models import Account, DailyUsage, Grant, Group, Membership
from dctoolkit.operations import audit
from dctoolkit.operations.admin import AuditedAdmin
from dctoolkit.operations.models import AuditAction


@admin.register(Account)
class AccountAdmin(AuditedAdmin):
    """Staff adjust a user's fair share here (2.0 = twice the share of a default user); each change is
    an audit event (share, before and after)."""

    list_display = ("user", "share", "usage", "usage_at")
    list_editable = ("share",)
    search_fields = ("user__username",)

    def audit_action(self, changed: list[str], change: bool) -> str:
        return AuditAction.SHARE if change and changed == ["share"] else super().audit_action(changed, change)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ("user",)


@admin.register(Group)
class GroupAdmin(AuditedAdmin):
    """Accounting groups (as `./dct group`): the share weighs the group against the others first; the max_
    caps hold for each member whose first group it is, unless they have their own; the total_ caps hold all
    the jobs charging the group together."""

    list_display = ("name", "share", "usage", "usage_at", "max_running_jobs", "max_running_gpus", "max_queued_jobs",
                    "total_running_jobs", "total_running_gpus")  # fmt: skip
    list_editable = ("share",)
    search_fields = ("name",)
    readonly_fields = ("usage", "usage_at", "created")
    inlines = (MembershipInline,)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The inline's membership edits (rows added, deleted, or given another user) are recorded as
        `./dct group member` records them: one `member` event with who was added and who removed."""
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        group = form.instance
        with transaction.atomic():
            before = set(Membership.objects.filter(group=group).values_list("user__username", flat=True))
            super().save_formset(request, form, formset, change)
            after = set(Membership.objects.filter(group=group).values_list("user__username", flat=True))
            record_members(request.user, group, added=sorted(after - before), removed=sorted(before - after))


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    list_display = ("user", "day", "cpu_seconds", "jobs")
    list_filter = ("day",)


# Django's own user admin, its changes (staff, active, groups, ...) recorded in the audit trail.
admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # The password page saves its own form (no save_model): recorded here, the password never.
        if request.path.endswith("/password/"):
            audit.record(request.user, AuditAction.CHANGE, obj, before={}, after={"password": "(changed)"})
        return super().log_change(request, obj, message)


class GrantForm(forms.ModelForm):
    """The same rules as `./dct grant`: the folder is checked and stored canonical."""

    class Meta:
        model = Grant
        fields = ("user", "path", "writable")

    def clean_path(self) -> str:
        try:
            return canonical_folder(self.cleaned_data["path"], hidden_folders())
        except GrantPathError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict:
        data = super().clean() or {}
        user, path = data.get("user"), data.get("path")
        if user and path and Grant.objects.filter(user=user, path=path).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"{user} has a grant of {path} already; change that one")
        return data


@admin.register(Grant)
class GrantAdmin(AuditedAdmin):
    """Granted folders (as `./dct grant`): a change applies to the user's jobs that start after it."""

    form = GrantForm
    list_display = ("user", "path", "writable", "granted_by", "created")
    list_filter = ("writable",)
    search_fields = ("user__username", "path")
    readonly_fields = ("granted_by", "created")

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        if not change:
            obj.granted_by = request.user
        super().save_model(request, obj, form, change)
