"""Jobs and their submissions; the life-cycle states.

State changes live in `transitions.py`, each one a conditional UPDATE.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


class JobState(models.TextChoices):
    QUEUED = "queued"
    HELD = "held"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = (JobState.DISPATCHED, JobState.RUNNING)
WAITING_STATES = (JobState.QUEUED, JobState.HELD)
FINAL_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class KillRequest(models.TextChoices):
    NONE = ""
    CANCEL = "cancel"
    HOLD = "hold"


class Submission(models.Model):
    """One submitted file: its staged input files are shared by its `queue = N` jobs."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions")
    source_name = models.CharField(max_length=255)
    text = models.TextField()
    email = models.CharField(max_length=254, blank=True)
    job_count = models.PositiveIntegerField(default=1)
    notified = models.BooleanField(default=False, help_text="The batch digest has been sent.")
    created_at = models.DateTimeField(auto_now_add=True)

    def folder(self) -> Path:
        return Path(settings.DCT_STORAGE) / "submissions" / str(self.pk)


class Job(models.Model):
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="jobs")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=200)
    process = models.PositiveIntegerField(default=0, help_text="$(Process): 0..N-1 within its submission.")
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    reason = models.TextField(blank=True, help_text="Why it ended as it did (failed, cancelled).")
    kill_requested = models.CharField(max_length=8, choices=KillRequest.choices, default="", blank=True)

    executable = models.CharField(max_length=255)
    arguments = models.JSONField(default=list, blank=True)
    inputs = models.JSONField(default=list, blank=True, help_text="Staged file names, in the submission folder.")
    environment = models.JSONField(default=dict, blank=True)
    output = models.JSONField(default=list, blank=True, help_text="Paths to bring back; empty: every new file.")
    email = models.CharField(max_length=254, blank=True)
    pinned_node = models.CharField(max_length=100, blank=True)
    request_cpus = models.PositiveIntegerField(default=1)
    request_memory_mb = models.PositiveIntegerField(default=256)
    request_gpus = models.PositiveIntegerField(default=0)
    max_runtime_seconds = models.FloatField(null=True, blank=True)
    network = models.CharField(max_length=8, blank=True)
    container = models.CharField(max_length=255, blank=True)

    node = models.ForeignKey("nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    gpu_indices = models.JSONField(default=list, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Dispatches so far.")
    exit_code = models.IntegerField(null=True, blank=True)
    submitted_at = models.DateTimeField()
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    run_seconds = models.FloatField(null=True, blank=True)
    cpu_seconds = models.FloatField(null=True, blank=True)
    max_rss_mb = models.FloatField(null=True, blank=True)
    sandboxed = models.BooleanField(null=True, blank=True)
    notified = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The scheduler reads the head of each user's queue, in order.
            models.Index(fields=["state", "owner", "id"], name="job_state_owner_id"),
            # Capacity in use per node, and the node-lost sweep.
            models.Index(fields=["state", "node"], name="job_state_node"),
            # History pages: one user's jobs, newest first.
            models.Index(fields=["owner", "-id"], name="job_owner_newest"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.name}, {self.state})"

    def folder(self) -> Path:
        """The job's folder in shared storage: stdout, stderr, outputs/."""
        return Path(settings.DCT_STORAGE) / "jobs" / str(self.pk)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class SchedulerLock(models.Model):
    """One row; a scheduling pass holds it FOR UPDATE so that passes never overlap.

    (SQLite has no row locks, but its IMMEDIATE transactions serialise the
    same passes.)
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
