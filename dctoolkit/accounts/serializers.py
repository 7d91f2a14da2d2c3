"""The usage row: `usage --json`, GET /api/usage/ and the portal's usage page, and the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime

from rest_framework import serializers

from dctoolkit.accounts.reports import group_payload, usage_payload


# One user in the fair-share table (a row of reports.usage_payload).
class UsageRowSerializer(serializers.Serializer):
    """One row of the fair-share table, as `usage --json` shows it."""

    user = serializers.CharField()
    group = serializers.CharField(allow_null=True, help_text="the accounting group they take turns in (their first)")
    usage = serializers.FloatField(help_text="decayed cpu-seconds")
    effective_usage = serializers.FloatField(help_text="usage divided by share")
    share = serializers.FloatField()
    running = serializers.IntegerField()
    queued = serializers.IntegerField()
    priority = serializers.IntegerField(help_text="1 goes first")


# One accounting group (a row of reports.group_payload).
class GroupRowSerializer(serializers.Serializer):
    """One accounting group, as `usage --json` shows it: groups are served by usage over share first."""

    group = serializers.CharField()
    share = serializers.FloatField()
    usage = serializers.FloatField(help_text="decayed billed units of the jobs charging it")
    effective_usage = serializers.FloatField(help_text="usage divided by share")
    priority = serializers.IntegerField(help_text="1 goes first")
    members = serializers.ListField(child=serializers.CharField(), help_text="user names, in the order they joined")


# `{"users": [...], "groups": [...]}`.
class UsageSerializer(serializers.Serializer):
    users = UsageRowSerializer(many=True)
    groups = GroupRowSerializer(many=True)


def usage_rows(now: datetime) -> list[dict]:
    """The fair-share table as every reader gets it, priority 1 first."""
    return list(UsageRowSerializer(usage_payload(now), many=True).data)


def group_rows(now: datetime) -> list[dict]:
    """The accounting groups as every reader gets them, priority 1 first."""
    return list(GroupRowSerializer(group_payload(now), many=True).data)
