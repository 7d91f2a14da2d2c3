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
    # Caps (`./dct limits`): this user's own, over DCT_MAX_RUNNING_JOBS / _GPUS / DCT_MAX_QUEUED_JOBS (None: those).
    max_running_jobs = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: DCT_MAX_RUNNING_JOBS.")
    max_running_gpus = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: DCT_MAX_RUNNING_GPUS.")
    max_queued_jobs = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: DCT_MAX_QUEUED_JOBS.")

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


class Grant(models.Model):
    """A host folder staff granted a user: every job of theirs gets it bound at the same path (README,
    "Granted folders").  `path` is canonical (accounts/grants.py); `writable`: bound read-write."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="grants")
    path = models.CharField(max_length=4096, help_text="The folder's absolute, resolved path on the nodes.")
    writable = models.BooleanField(default=False, help_text="Jobs may write in it (else it is read-only).")
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    # One row per (user, path), kept so by the code that grants (accounts/granting.py), not by a unique
    # index: MariaDB cannot index a 4,096-character column, and a path may be that long.

    def __str__(self) -> str:
        return f"{self.path} ({'read-write' if self.writable else 'read-only'}) for {self.user}"


class Group(models.Model):
    """An accounting group (`./dct group`): its members' jobs charge it, and fair share serves groups by
    `share` first, then users within their group (`accounts.fairshare`).  Usage decays as an Account's."""

    name = models.CharField(max_length=100, unique=True)
    share = models.FloatField(default=1.0, help_text="Relative share of the cluster, against other groups.")
    usage = models.FloatField(default=0.0, help_text="Decayed billed units as of usage_at, of jobs charged to it.")
    usage_at = models.DateTimeField(null=True, blank=True)
    # Caps (`./dct limits --group`): over the settings for its members (a user's own caps come first).
    max_running_jobs = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: DCT_MAX_RUNNING_JOBS.")
    max_running_gpus = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: DCT_MAX_RUNNING_GPUS.")
    max_queued_jobs = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: DCT_MAX_QUEUED_JOBS.")
    # Caps on all the jobs charging the group together (`./dct limits --group NAME --total-...`; Slurm's GrpJobs
    # and GrpTRES=gres/gpu): None or 0, no such cap.
    total_running_jobs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Jobs charging the group that run at once, all members together. Empty: no cap.",
    )
    total_running_gpus = models.PositiveIntegerField(
        null=True, blank=True, help_text="GPUs the jobs charging the group hold at once, all together. Empty: no cap."
    )
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user in a group; a user's first group (the lowest id) is the one their jobs charge by default."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    added = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "user"], name="one_membership_per_group_user")]
        indexes = [models.Index(fields=["user", "id"], name="membership_user_first")]

    def __str__(self) -> str:
        return f"{self.user} in {self.group}"


class DailyGroupUsage(models.Model):
    """Cluster time charged to an accounting group per day (not decayed), for the usage page's chart by group."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField()
    cpu_seconds = models.FloatField(default=0.0, help_text="billed units (cpus x wall seconds by default)")
    jobs = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "day"], name="one_usage_row_per_group_day")]
