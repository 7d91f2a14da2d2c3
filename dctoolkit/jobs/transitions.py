"""Every job state change, each one conditional UPDATE whose row count says who won.

Losing a race (another scheduler claimed the job, the user cancelled it, the
node was declared lost) is a normal outcome: the function returns False and
the caller leaves the job alone.  The attempt number in the WHERE clause is
what keeps one dispatch from running twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from dctoolkit.fastsql import update_rows
from dctoolkit.nodes.models import Node

from .models import ACTIVE_STATES, FINAL_STATES, Job, JobState, KillRequest

# Jobs claimed per UPDATE: 3 query parameters each, below SQLite's oldest limit (999).
CLAIM_BATCH = 300


def claim(job_id: int, node_id: int, gpu_indices: list[int], now: datetime) -> int | None:
    """queued -> dispatched to `node_id`; returns the new attempt number, or None if lost."""
    won = Job.objects.filter(id=job_id, state=JobState.QUEUED).update(
        state=JobState.DISPATCHED,
        node_id=node_id,
        gpu_indices=gpu_indices,
        attempts=F("attempts") + 1,
        dispatched_at=now,
        reason="",
    )
    if not won:
        return None
    return Job.objects.filter(id=job_id).values_list("attempts", flat=True).first()


def claim_many(placements: Mapping[int, int], now: datetime) -> dict[int, int]:
    """Queued jobs without GPUs -> dispatched: job id -> node id.  Returns job id -> new attempt
    for the jobs won; a job no longer queued (cancelled, held meanwhile) is left out.

    The same conditional UPDATE as `claim`, for many jobs in one statement per
    CLAIM_BATCH (their gpu_indices are empty already: they asked for none).
    The caller holds the scheduler lock, so the jobs dispatched at `now` are
    exactly the ones this call won.
    """
    won: dict[int, int] = {}
    items = list(placements.items())
    for first in range(0, len(items), CLAIM_BATCH):
        batch = dict(items[first : first + CLAIM_BATCH])
        _dispatch_rows(batch, now)
        won.update(
            (job_id, attempt) for job_id, node_id, attempt in _dispatched_rows(batch, now) if batch[job_id] == node_id
        )
    return won


def _dispatch_rows(batch: dict[int, int], now: datetime) -> None:
    # Written out because Django's Case(When(...)) deep-copies every branch:
    # with a few hundred jobs that costs more than the UPDATE itself.
    table = connection.ops.quote_name(Job._meta.db_table)
    cases = " ".join(["WHEN %s THEN %s"] * len(batch))
    marks = ", ".join(["%s"] * len(batch))
    sql = (
        f"UPDATE {table} SET state = %s, node_id = CASE id {cases} END, attempts = attempts + 1, "  # noqa: S608
        f"dispatched_at = %s, reason = '' WHERE state = %s AND id IN ({marks})"
    )
    params = [
        JobState.DISPATCHED.value,
        *(value for pair in batch.items() for value in pair),
        connection.ops.adapt_datetimefield_value(now),
        JobState.QUEUED.value,
        *batch,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _dispatched_rows(batch: dict[int, int], now: datetime) -> list[tuple[int, int, int]]:
    # (id, node id, attempts) of the batch's jobs dispatched at `now`; written out as _dispatch_rows is.
    table = connection.ops.quote_name(Job._meta.db_table)
    marks = ", ".join(["%s"] * len(batch))
    sql = f"SELECT id, node_id, attempts FROM {table} WHERE state = %s AND dispatched_at = %s AND id IN ({marks})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [JobState.DISPATCHED.value, connection.ops.adapt_datetimefield_value(now), *batch])
        return cursor.fetchall()


def start(job_id: int, attempt: int, node_name: str, now: datetime) -> bool:
    """dispatched -> running, only if this attempt is still dispatched to this node."""
    node_table = connection.ops.quote_name(Node._meta.db_table)
    return bool(
        update_rows(
            Job,
            {"id": job_id, "state": JobState.DISPATCHED, "attempts": attempt, "kill_requested": ""},
            {"state": JobState.RUNNING, "started_at": now},
            extra_where=(f"node_id IN (SELECT id FROM {node_table} WHERE name = %s)", [node_name]),  # noqa: S608
        )
    )


def finish(job_id: int, attempt: int, state: JobState, now: datetime, reason: str = "", **results) -> bool:
    """running -> a final state (or back to queued/held), recording what the run measured."""
    values = {"state": state, "finished_at": now if state in FINAL_STATES else None, "reason": reason}
    return bool(
        update_rows(
            Job,
            {"id": job_id, "state": JobState.RUNNING, "attempts": attempt},
            {**values, "kill_requested": "", **results},
        )
    )


def requeue(job_id: int, attempt: int, reason: str, now: datetime, hold: bool = False) -> JobState | None:
    """A dispatched or running attempt that did not end on its own goes back to the queue.

    After DCT_MAX_ATTEMPTS dispatches it fails instead, with `reason`.  A
    cancel that was pending wins.  Returns the new state, or None if the
    attempt was no longer active.
    """
    active = Job.objects.filter(id=job_id, state__in=ACTIVE_STATES, attempts=attempt)
    if active.filter(kill_requested=KillRequest.CANCEL).update(
        state=JobState.CANCELLED, finished_at=now, reason="cancelled by its owner", kill_requested=""
    ):
        return JobState.CANCELLED
    if hold or active.filter(kill_requested=KillRequest.HOLD).exists():
        if active.update(state=JobState.HELD, reason="held by its owner", kill_requested="", node=None):
            return JobState.HELD
        return None
    if attempt >= settings.DCT_MAX_ATTEMPTS:
        if active.update(state=JobState.FAILED, finished_at=now, reason=f"{reason} (after {attempt} attempts)"):
            return JobState.FAILED
        return None
    if active.update(state=JobState.QUEUED, reason=reason, started_at=None, gpu_indices=[]):
        return JobState.QUEUED
    return None


def cancel(job: Job, now: datetime | None = None) -> bool:
    """Cancel a job; a running one is killed by its node within a couple of seconds."""
    now = now or timezone.now()
    waiting = Q(state__in=(JobState.QUEUED, JobState.HELD)) | Q(state=JobState.DISPATCHED)
    if Job.objects.filter(waiting, id=job.id).update(
        state=JobState.CANCELLED, finished_at=now, reason="cancelled by its owner", kill_requested=""
    ):
        return True
    return bool(Job.objects.filter(id=job.id, state=JobState.RUNNING).update(kill_requested=KillRequest.CANCEL))


def hold(job: Job) -> bool:
    """Keep a job out of scheduling; a running one is stopped and comes back held."""
    if Job.objects.filter(id=job.id, state__in=(JobState.QUEUED, JobState.DISPATCHED)).update(
        state=JobState.HELD, reason="held by its owner", node=None
    ):
        return True
    return bool(Job.objects.filter(id=job.id, state=JobState.RUNNING).update(kill_requested=KillRequest.HOLD))


def release(job: Job) -> bool:
    """held -> queued."""
    return bool(Job.objects.filter(id=job.id, state=JobState.HELD).update(state=JobState.QUEUED, reason=""))


@dataclass(frozen=True)
class Control:
    """A user's action on a job (cancel / hold / release), as the CLI and the API offer it."""

    act: Callable[[Job], bool]
    done: str  # what the CLI says when it worked
    refusal: str  # why it did not, after "job N is STATE: "


CONTROLS = {
    "cancel": Control(cancel, "cancelled (a running job stops within 2 seconds)", "it has already ended"),
    "hold": Control(hold, "held", "only queued, dispatched or running jobs can be held"),
    "release": Control(release, "released", "only held jobs can be released"),
}
