"""GPU utilisation on job rows: folded in from a node's heartbeat, read for the job object, mails and reasons.

The arithmetic is `gpuuse`'s; this reads and writes the rows.  A heartbeat
costs a node with running GPU jobs one read of those jobs and one UPDATE for
all of them (a CASE per column), whatever their number; a node without
GPU jobs costs nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Case, DateTimeField, F, FloatField, IntegerField, Q, Value, When

from dctoolkit.accounts.usage import billing
from dctoolkit.jobs.gpuuse import GpuTally, IdleHolder, IdleRule, JobSample, fold, holding, idle_line, is_idle
from dctoolkit.jobs.gpuuse import utilization as utilization_shape
from dctoolkit.jobs.models import FINAL_STATES, Job, JobState

TALLY_COLUMNS = ("gpu_util_total", "gpu_util_samples", "gpu_util_recent", "gpu_idle_since", "gpu_util_at")


def idle_rule() -> IdleRule:
    return IdleRule(percent=settings.DCT_GPU_IDLE_PERCENT, after_seconds=settings.DCT_GPU_IDLE_SECONDS)


def tally_of(row: Job | Mapping) -> GpuTally:
    """A job row's tally (a Job, or a dict of TALLY_COLUMNS)."""
    get = row.get if isinstance(row, Mapping) else lambda name: getattr(row, name)
    return GpuTally(
        total=get("gpu_util_total") or 0.0,
        samples=get("gpu_util_samples") or 0,
        recent=get("gpu_util_recent"),
        idle_since=get("gpu_idle_since"),
        sampled_at=get("gpu_util_at"),
    )


@dataclass(frozen=True)
class HeldGpus:
    """A running job of this node that holds GPUs: which ones, and its tally so far."""

    job_id: int
    attempt: int
    indices: tuple[int, ...]
    tally: GpuTally
    started_at: datetime | None = None


def running_gpu_jobs(node_name: str) -> list[HeldGpus]:
    """The node's running jobs that hold GPUs (one indexed read)."""
    rows = Job.objects.filter(node__name=node_name, state=JobState.RUNNING, request_gpus__gt=0).values(
        "id", "attempts", "gpu_indices", "started_at", *TALLY_COLUMNS
    )
    return [
        HeldGpus(
            r["id"],
            r["attempts"],
            tuple(i for i in r["gpu_indices"] or () if isinstance(i, int)),
            tally_of(r),
            r["started_at"],
        )
        for r in rows
    ]


def _own(h: HeldGpus) -> GpuTally:
    return h.tally if _this_attempt(h.started_at, h.tally.sampled_at) else GpuTally()


def record_samples(held: list[HeldGpus], samples: Mapping[int, JobSample], now: datetime) -> int:
    """Fold one heartbeat's samples (job id -> sample) into the rows, in one UPDATE; returns rows changed.

    Each row changes only while it is still running the attempt that was sampled.
    """
    rule = idle_rule()
    # What a row holds from before its attempt started is an earlier run's (_own), whatever the node thinks.
    folded = {h: fold(_own(h), samples[h.job_id], now, rule) for h in held if h.job_id in samples}
    if not folded:
        return 0

    def column(name: str, value, output) -> Case:
        whens = [When(Q(id=h.job_id, attempts=h.attempt), then=Value(value(t), output_field=output))
                 for h, t in folded.items()]  # fmt: skip
        return Case(*whens, default=F(name), output_field=output)

    return Job.objects.filter(id__in=[h.job_id for h in folded], state=JobState.RUNNING).update(
        gpu_util_total=column("gpu_util_total", lambda t: t.total, FloatField()),
        gpu_util_samples=column("gpu_util_samples", lambda t: t.samples, IntegerField()),
        gpu_util_recent=column("gpu_util_recent", lambda t: t.recent, FloatField()),
        gpu_idle_since=column("gpu_idle_since", lambda t: t.idle_since, DateTimeField()),
        gpu_util_at=column("gpu_util_at", lambda t: t.sampled_at, DateTimeField()),
    )


def attempt_tally(job: Job) -> GpuTally:
    """The job's tally if it belongs to its current (or last) attempt, else an empty one: a requeued job's
    row keeps an earlier run's figures until its next run's first sample replaces them."""
    return tally_of(job) if _this_attempt(job.started_at, job.gpu_util_at) else GpuTally()


def _this_attempt(started_at: datetime | None, sampled_at: datetime | None) -> bool:
    """Whether the last sample was taken in the attempt that started at `started_at`."""
    return started_at is not None and sampled_at is not None and sampled_at >= started_at


def utilization(job: Job) -> dict | None:
    """The job object's `gpu_utilization` (gpuuse.utilization): None for a job holding no GPUs."""
    if job.request_gpus <= 0:
        return None  # most jobs: nothing more to read
    return utilization_shape(
        job.id, job.request_gpus, attempt_tally(job), idle_rule(), billing().gpu, ended=job.state in FINAL_STATES
    )


def idle_line_of(job: Job) -> str:
    """The idle line of an ended job's mail ("" unless its GPUs were idle when it ended)."""
    tally = attempt_tally(job)
    if job.request_gpus <= 0 or not is_idle(tally, idle_rule()):
        return ""
    return idle_line(job.id, job.request_gpus, tally, idle_rule(), billing().gpu, ended=True)


def idle_holders() -> list[IdleHolder]:
    """Running jobs holding GPUs idle now, oldest idle first (one read of the few running GPU jobs under the
    threshold)."""
    rule = idle_rule()
    rows = (
        Job.objects.filter(state=JobState.RUNNING, request_gpus__gt=0, gpu_idle_since__isnull=False)
        .order_by("gpu_idle_since", "id")
        .values("id", "request_gpus", "node__name", "started_at", *TALLY_COLUMNS)
    )
    holders = []
    for r in rows:
        tally = tally_of(r)
        if _this_attempt(r["started_at"], r["gpu_util_at"]) and is_idle(tally, rule):
            holders.append(IdleHolder(r["node__name"] or "", holding(r["id"], r["request_gpus"], tally, rule)))
    return holders
