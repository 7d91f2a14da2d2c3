"""What a job's object shows of its pipeline: `depends_on`, why a waiting job waits, `attempt_history`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import Count, Q
from django.utils import timezone

from dctoolkit.jobs.models import Attempt, Dependency, Job, JobState
from dctoolkit.jobs.scheduling.dependencies import FINAL, Parent, waiting_reason

# Ids per IN (...): below SQLite's oldest parameter limit (999).
CHUNK = 900
# A throttled job takes its slot from the moment it is queued until its kill (if any) completes.
# Queued ones count because a pass does not read throttles: the housekeeping queues only as many as
# may run, which is what keeps at most K dispatched or running (DESIGN.md, Pipelines; README says
# "queued, dispatched or running").  Counting only dispatched and running ones would queue K more
# every round while none can be placed, and a pass would then dispatch them all.
THROTTLE_COUNTS = (JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING, JobState.SUSPENDED)


def throttle_slots(submission_ids: Iterable[int]) -> dict[int, int]:
    """submission id -> how many of its throttled jobs hold a slot: one GROUP BY over throttled jobs only."""
    ids = list(submission_ids)
    found: dict[int, int] = {}
    for first in range(0, len(ids), CHUNK):
        holding = Job.objects.filter(submission_id__in=ids[first : first + CHUNK], max_running__isnull=False)
        holding = holding.filter(Q(state__in=THROTTLE_COUNTS) | ~Q(kill_requested=""))
        found.update(
            holding.order_by().values("submission_id").annotate(n=Count("id")).values_list("submission_id", "n")
        )
    return found


def by_job_or_submission(
    job_ids: Iterable[int], submissions: Iterable[int] | None, job_column: str
) -> Iterator[tuple[Q, set[int] | None]]:
    """The filters that read a table's rows of these jobs (`job_column`: the column naming the job),
    each with the ids to keep of what it reads (None: all of it).

    Per CHUNK ids; or, given the jobs' submissions when they are far fewer than the chunks of ids
    (a batch's 10,000 jobs: 12 IN lists of 900 ids, or one of one submission), per CHUNK submissions,
    the rows of their other jobs left out."""
    ids = list(job_ids)
    subs = sorted(set(submissions)) if submissions is not None else None
    if subs is not None and len(subs) * CHUNK <= len(ids):
        wanted = set(ids)
        for first in range(0, len(subs), CHUNK):
            yield Q(**{f"{job_column}__submission_id__in": subs[first : first + CHUNK]}), wanted
        return
    for first in range(0, len(ids), CHUNK):
        yield Q(**{f"{job_column}_id__in": ids[first : first + CHUNK]}), None


def depends_on(job_ids: Iterable[int], submissions: Iterable[int] | None = None) -> dict[int, list[dict]]:
    """job id -> [{"job": parent id, "kind": ...}], in parent order (jobs with none are left out).

    `submissions` (the jobs' submissions, when known) lets many jobs of a few batches be read by batch."""
    found: dict[int, list[dict]] = defaultdict(list)
    for where, keep in by_job_or_submission(job_ids, submissions, "child"):
        edges = Dependency.objects.filter(where).order_by("child_id", "parent_id")
        for child_id, parent_id, kind in edges.values_list("child_id", "parent_id", "kind"):
            if keep is None or child_id in keep:
                found[child_id].append({"job": parent_id, "kind": kind})
    return found


def waiting_reasons(jobs: Iterable[Job], now: datetime) -> dict[int, str]:
    """job id -> what each waiting job of `jobs` waits for ("waiting for job 12, running on node-2 for 40 min")."""
    ids = [j.id for j in jobs if j.state == JobState.WAITING]
    parents: dict[int, list[Parent]] = defaultdict(list)
    for first in range(0, len(ids), CHUNK):
        edges = Dependency.objects.filter(child_id__in=ids[first : first + CHUNK], resolved=False)
        rows = edges.order_by("child_id", "parent_id").values_list(
            "child_id", "parent_id", "kind", "parent__state", "parent__node__name", "parent__started_at"
        )
        for child_id, parent_id, kind, state, node, started in rows:
            if state in FINAL:
                continue  # ended: the scheduler applies it within a second
            seconds = (now - started).total_seconds() if state == JobState.RUNNING and started else None
            parents[child_id].append(Parent(parent_id, kind, state, node, seconds))
    jobs = [j for j in jobs if j.state == JobState.WAITING]
    retrying = {j.id: j.reason for j in jobs if j.retry_at}
    later = {j.id: start_reason(j.start_after, now) for j in jobs if j.start_after and j.start_after > now}
    throttled = {j.submission_id for j in jobs if j.max_running}
    active = throttle_slots(throttled) if throttled else {}
    held_back = {
        j.id: throttle_reason(j.max_running, active.get(j.submission_id, 0), j.submission_id)
        for j in jobs
        if j.max_running
    }
    return {
        job_id: (parents[job_id] and waiting_reason(parents[job_id]))
        or retrying.get(job_id)
        or later.get(job_id)
        or held_back.get(job_id)
        or waiting_reason(parents[job_id])
        for job_id in ids
    }


def start_reason(start: datetime, now: datetime) -> str:
    """'starts after 2026-12-01 22:00 (in 25 min)', in the server's local time."""
    left = max((start - now).total_seconds(), 0.0)
    if left < 60:
        wait = f"{int(left)} s"
    elif left < 3600:
        wait = f"{int(left // 60)} min"
    elif left < 86400:
        wait = f"{left / 3600:.1f} h"
    else:
        wait = f"{left / 86400:.1f} days"
    return f"starts after {timezone.localtime(start):%Y-%m-%d %H:%M} (in {wait})"


def throttle_reason(limit: int, active: int, submission_id: int) -> str:
    """'max_running = 2: 2 jobs of batch 7 running' (queued and dispatched ones count as running)."""
    if active < limit:
        return f"max_running = {limit}: {active} of batch {submission_id} running; it is queued within a second"
    return f"max_running = {limit}: {active} job{'s' if active != 1 else ''} of batch {submission_id} running"


def attempt_histories(job_ids: Iterable[int], submissions: Iterable[int] | None = None) -> dict[int, list[dict]]:
    """job id -> its ended runs, oldest first: attempt, node, state, exit_code, reason, started_at, finished_at.

    `submissions` as for `depends_on`."""
    found: dict[int, list[dict]] = defaultdict(list)
    for where, keep in by_job_or_submission(job_ids, submissions, "job"):
        rows = Attempt.objects.filter(where).order_by("job_id", "attempt", "id")
        for a in rows:
            if keep is not None and a.job_id not in keep:
                continue
            found[a.job_id].append(
                {
                    "attempt": a.attempt,
                    "node": a.node or None,
                    "state": a.state,
                    "exit_code": a.exit_code,
                    "reason": a.reason,
                    "started_at": a.started_at.isoformat(timespec="microseconds") if a.started_at else None,
                    "finished_at": a.finished_at.isoformat(timespec="microseconds"),
                }
            )
    return found
