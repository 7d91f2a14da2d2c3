"""Accounts: each user's fair-share record and API token live beside Django's User."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Account(models.Model):
    """A user's fair-share state: usage decays from `usage_at` with the half-life."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    share = models.FloatField(default=1.0, help_text="Relative share of the cluster; 2.0 counts usage half.")
    usage = models.FloatField(default=0.0, help_text="Decayed cpu-seconds as of usage_at.")
    usage_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"account of {self.user}"


class DailyUsage(models.Model):
    """Cluster time per user per day (not decayed), for history and charts."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField()
    cpu_seconds = models.FloatField(default=0.0, help_text="cpus x wall seconds")
    jobs = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="one_usage_row_per_user_day")]
