"""The one JSON shape of jobs and nodes, shared by `--json`, the API and the portal."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings

from dctoolkit.nodes.liveness import display_state, is_lost
from dctoolkit.nodes.models import Node, NodeState

from .advice import Usage, compare
from .dispatch import Capacity, capacity_in_use, free_node
from .models import Job, JobState
from .reasons import NodeView, Request, WaitFacts, explain_wait
from .waiting import QueueOrder, ahead_own, queue_order


def finite(value: float | None) -> float | None:
    """A stored float as JSON can carry it: inf and nan (rows from before the bounds) become None."""
    return value if value is None or math.isfinite(value) else None


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with time zone and microseconds (the contract's time format)."""
    return value.isoformat(timespec="microseconds") if value else None


def run_seconds(job: Job, now: datetime) -> float | None:
    """Wall seconds: counts up while running, fixed once ended."""
    if job.state == JobState.RUNNING and job.started_at:
        return round((now - job.started_at).total_seconds(), 3)
    return job.run_seconds


def job_dict(job: Job, now: datetime, reason: str | None = None) -> dict:
    """A job as the contract shapes it (`reason`: why it waits, or why it ended)."""
    return {
        "id": job.id,
        "name": job.name,
        "owner": job.owner.username,
        "state": job.state,
        # mypy: node_id is set, so node is a Node.
        "node": job.node.name if job.node_id else None,  # type: ignore[union-attr]
        "exit_code": job.exit_code,
        "attempts": job.attempts,
        "reason": job.reason if reason is None else reason,
        "submitted_at": iso(job.submitted_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "run_seconds": finite(run_seconds(job, now)),
        "cpu_seconds": finite(job.cpu_seconds),
        "max_rss_mb": finite(job.max_rss_mb),
        "request_cpus": job.request_cpus,
        "request_memory_mb": job.request_memory_mb,
        "request_gpus": job.request_gpus,
        "max_runtime_seconds": finite(job.max_runtime_seconds),
        "pinned_node": job.pinned_node or None,
        "process": job.process,
        "submission": job.submission_id,
        "executable": job.executable.rsplit("/", 1)[-1],
        "arguments": job.arguments,
        "gpu_indices": job.gpu_indices,
        "sandboxed": job.sandboxed,
        "usage_advice": usage_advice(job),
    }


def usage_advice(job: Job) -> dict | None:
    """Requested versus used, and a better request when the gap is large; None before it ran."""
    advice = compare(
        Usage(
            job.request_cpus,
            job.request_memory_mb,
            finite(job.run_seconds),
            finite(job.cpu_seconds),
            finite(job.max_rss_mb),
        )
    )
    return {"comparison": advice.comparison, "suggestions": list(advice.suggestions)} if advice else None


def node_views(now: datetime) -> tuple[list[tuple[Node, Capacity]], list[NodeView]]:
    nodes = list(Node.objects.all())
    used = capacity_in_use()
    rows, views = [], []
    for node in nodes:
        cap = used.get(node.id, Capacity())
        online = node.state == NodeState.ONLINE and not is_lost(
            node.last_heartbeat, now, settings.DCT_NODE_TIMEOUT_SECONDS
        )
        rows.append((node, cap))
        free = free_node(node, cap)
        views.append(
            NodeView(
                name=node.name,
                online=online,
                takes_jobs=online and not node.drained and node.accepts_jobs,
                total_cpus=free.total_cpus,
                total_memory_mb=free.total_memory_mb,
                total_gpus=free.total_gpus,
                free_cpus=free.free_cpus,
                free_memory_mb=free.free_memory_mb,
                free_gpus=len(free.free_gpus),
                drained=node.drained,
                containers=free.containers,
            )
        )
    return rows, views


def node_dict(node: Node, cap: Capacity, now: datetime) -> dict:
    online = node.state == NodeState.ONLINE and not is_lost(node.last_heartbeat, now, settings.DCT_NODE_TIMEOUT_SECONDS)
    free = free_node(node, cap)
    return {
        "name": node.name,
        "state": display_state(
            online=online,
            drained=node.drained,
            accepts_jobs=node.accepts_jobs,
            free_cpus=free.free_cpus,
            running_jobs=cap.jobs,
        ),
        "cpus": node.cpus,
        "threads": node.threads,
        "slots": node.slots,
        "memory_total_mb": node.memory_total_mb,
        "memory_available_mb": node.memory_available_mb,
        "disk_free_mb": node.disk_free_mb,
        "gpus": node.gpus,
        "cuda": node.cuda or None,
        "load": node.load,
        "running_jobs": cap.jobs,
        "free_cpus": max(free.free_cpus, 0),
        "free_memory_mb": max(free.free_memory_mb, 0),
        "free_gpus": len(free.free_gpus),
        "last_heartbeat": iso(node.last_heartbeat),
        "sandbox": node.sandbox,
        "accepts_jobs": node.accepts_jobs,
        "containers": node.containers,
        "hostname": node.hostname,
    }


def nodes_payload(now: datetime) -> list[dict]:
    rows, _ = node_views(now)
    return [node_dict(node, cap, now) for node, cap in rows]


def jobs_payload(jobs: Iterable[Job], now: datetime, order: QueueOrder | None = None) -> list[dict]:
    """Jobs as dicts; waiting ones get their reason to wait.

    The cost grows with the jobs given, not with the queue: `order` (the
    queue's fair-share order, computed here when not given) and two indexed
    counts per owner of a queued job.
    """
    jobs = list(jobs)
    waiting = [j for j in jobs if j.state in (JobState.QUEUED, JobState.HELD)]
    if not waiting:
        return [job_dict(j, now) for j in jobs]
    _, views = node_views(now)
    order = order or queue_order(now)
    rank = ahead_own(waiting)
    reasons = {}
    for owner_id in {j.owner_id for j in waiting}:
        lower = order.ahead_of(owner_id)
        for j in (j for j in waiting if j.owner_id == owner_id):
            facts = WaitFacts(nodes=tuple(views), ahead_own=rank.get(j.id, 0), ahead_others=lower)
            request = Request(
                state=j.state,
                cpus=j.request_cpus,
                memory_mb=j.request_memory_mb,
                gpus=j.request_gpus,
                node=j.pinned_node,
                container=j.container,
                previous=j.reason if j.state == JobState.QUEUED else "",
            )
            reasons[j.id] = explain_wait(request, facts)
    return [job_dict(j, now, reasons.get(j.id)) for j in jobs]
