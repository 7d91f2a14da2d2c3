"""Nodes: machines that run jobs, as last reported by their heartbeats."""

from __future__ import annotations

from django.db import models


class NodeState(models.TextChoices):
    ONLINE = "online"
    OFFLINE = "offline"


class Node(models.Model):
    """One node worker (`worker_entry.py --node NAME`), registered by its first heartbeat."""

    name = models.CharField(max_length=100, unique=True)
    hostname = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.ONLINE)
    drained = models.BooleanField(default=False, help_text="A drained node finishes its jobs and takes no new ones.")
    slots = models.PositiveIntegerField(default=1, help_text="CPUs the node offers to jobs.")
    cpus = models.PositiveIntegerField(default=1, help_text="Physical cores.")
    threads = models.PositiveIntegerField(default=1, help_text="Logical CPUs.")
    memory_total_mb = models.PositiveIntegerField(default=0)
    memory_available_mb = models.PositiveIntegerField(default=0)
    disk_free_mb = models.PositiveIntegerField(default=0)
    load = models.FloatField(default=0.0)
    gpus = models.JSONField(default=list, blank=True, help_text="[{index, name, memory_mb, uuid}]")
    cuda = models.CharField(max_length=64, blank=True)
    sandbox = models.BooleanField(default=False)
    containers = models.JSONField(default=list, blank=True)
    accepts_jobs = models.BooleanField(default=True, help_text="False when the node cannot fence jobs and must.")
    worker_id = models.CharField(max_length=64, blank=True, help_text="Changes every time the worker starts.")
    started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
