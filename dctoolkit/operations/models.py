"""The audit trail: who did what to which job, node, share, cap, group or grant, and when.

Rows are written by `dctoolkit.operations.audit.record` only, at the one
place each action goes through; nothing else changes them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    """What a person did.  Grants, caps and groups add their own words here (and call `audit.record`)."""

    CANCEL = "cancel"
    HOLD = "hold"
    RELEASE = "release"
    EDIT = "edit"
    RESUBMIT = "resubmit"
    DRAIN = "drain"
    RESUME = "resume"
    RECLAIM = "reclaim"  # a desktop's owner pressed "I need it now" (nodes/lending.py)
    SHARE = "share"  # a user's fair share changed
    GRANT = "grant"  # a host folder granted to a user (details: path, writable)
    REVOKE = "revoke"  # a user's granted folder taken back
    LIMITS = "limits"  # a user's or a group's caps changed (./dct limits; details: before and after)
    GROUP = "group"  # an accounting group made, its share changed, or deleted (./dct group add, remove)
    MEMBER = "member"  # users added to or removed from an accounting group (details: added, removed)
    ADD = "add"  # the admin: a row made by hand
    CHANGE = "change"  # the admin: a row's fields changed (details: before and after)
    DELETE = "delete"  # the admin: a row deleted


class AuditEvent(models.Model):
    """One action of one person (or of the system: no actor) on one target (or a selection of jobs)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The actor's name as it was: it stays when the account is deleted; "" is the system.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32)
    # job, jobs (several, by a selector), submission, node, user, ... and what names it there.
    target_kind = models.CharField(max_length=32)
    target = models.CharField(max_length=200, blank=True)
    # Before/after for edits; for a bulk action the count, the selector and the ids (as ranges).
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        who = self.actor_name or "system"
        return f"{self.at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.target_kind} {self.target}"
