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
    gpus = models.JSONField(default=list, blank=True, help_text="[{index, name, memory_mb, uuid, capability}]")
    labels = models.JSONField(
        default=list, blank=True, help_text="DCT_NODE_LABELS of the node: what jobs ask with labels =."
    )
    cuda = models.CharField(max_length=64, blank=True)
    arch = models.CharField(max_length=32, blank=True, help_text="Its CPU architecture, as ClassAd Arch (X86_64).")
    sandbox = models.BooleanField(default=False)
    containers = models.JSONField(default=list, blank=True)
    enforcement = models.JSONField(
        default=dict,
        blank=True,
        help_text='How it limits jobs: {"cpus": affinity|cgroup, "memory": watch|cgroup, "pids": null|cgroup}.',
    )
    accepts_jobs = models.BooleanField(default=True, help_text="False when the node cannot fence jobs and must.")
    # Desktop nodes (DCT_NODE_POLICY=desktop): a workstation that lends its idle time (nodes/worker/desktop.py).
    policy = models.CharField(max_length=16, blank=True, help_text="DCT_NODE_POLICY: '' (takes jobs) or desktop.")
    owner = models.CharField(max_length=150, blank=True, help_text="DCT_NODE_OWNER: the user whose workstation it is.")
    idle_minutes = models.FloatField(default=0.0, help_text="DCT_IDLE_MINUTES: lends after this idle.")
    owner_present = models.BooleanField(default=False, help_text="A desktop's owner is using it: it takes no jobs.")
    presence_since = models.DateTimeField(null=True, blank=True, help_text="When owner_present last changed.")
    reclaimed_at = models.DateTimeField(
        null=True, blank=True, help_text="Its owner pressed 'I need it now': jobs are vacated, nothing new starts."
    )
    worker_id = models.CharField(max_length=64, blank=True, help_text="Changes every time the worker starts.")
    started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
