"""A job as its policy expressions see it (`jobpolicy.JobFacts`), read from its row, its owner and its runs.

The node calls `job_facts` when a run ends (on_exit_hold, on_exit_remove), the housekeeping for the
jobs with a periodic expression; no other job is ever read here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from dctoolkit.jobs.jobpolicy import JobFacts, JobStatus
from dctoolkit.jobs.models import Attempt, Job, JobState

_STATUS = {
    JobState.RUNNING: JobStatus.RUNNING,
    JobState.SUSPENDED: JobStatus.SUSPENDED,
    JobState.HELD: JobStatus.HELD,
}


def status_of(state: str) -> JobStatus:
    """HTCondor's JobStatus for a job in `state` that has not ended (waiting, queued, dispatched: idle)."""
    return _STATUS.get(JobState(state), JobStatus.IDLE)


def job_facts(
    job: Job,
    now: datetime,
    status: JobStatus | None = None,
    walls: tuple[float, float] = (0.0, 0.0),
    exit_code: int | None = None,
) -> JobFacts:
    """`job`'s facts at `now`; `status` overrides its state's (RUNNING for the run that just ended, whose
    `exit_code` is given); `walls`: the wall seconds of all its runs and of the last (`run_walls`)."""
    status = status or status_of(job.state)
    return JobFacts(
        now=now.timestamp(),
        status=status,
        entered_status=_entered(job, status).timestamp(),
        qdate=job.submitted_at.timestamp(),
        starts=job.attempts,
        exit_code=exit_code if exit_code is not None else job.exit_code,
        start_date=job.started_at.timestamp() if job.started_at else None,
        wall_seconds=walls[0],
        last_wall_seconds=walls[1],
        hold_reason=job.reason if status == JobStatus.HELD else "",
        hold_code=job.hold_code,
        hold_subcode=job.hold_subcode,
        cluster=job.submission_id,
        process=job.process,
        request_cpus=job.request_cpus,
        request_memory_mb=job.request_memory_mb,
        request_gpus=job.request_gpus,
        owner=job.owner.get_username(),
        holds=job.num_holds,
        attributes=job.attributes or {},
    )


def run_walls(job_ids: Iterable[int]) -> dict[int, tuple[float, float]]:
    """job id -> (wall seconds of every run recorded, of the last one): HTCondor's RemoteWallClockTime and
    LastRemoteWallClockTime.  One query for all of them."""
    walls: dict[int, tuple[float, float]] = {}
    rows = Attempt.objects.filter(job_id__in=list(job_ids), started_at__isnull=False).order_by("job_id", "attempt")
    for job_id, started, finished in rows.values_list("job_id", "started_at", "finished_at"):
        seconds = max((finished - started).total_seconds(), 0.0) if started else 0.0
        total, _ = walls.get(job_id, (0.0, 0.0))
        walls[job_id] = (total + seconds, seconds)
    return walls


def _entered(job: Job, status: JobStatus) -> datetime:
    """EnteredCurrentStatus: since when the job is in its present state, as near as its row says."""
    if status == JobStatus.HELD and job.held_at:
        return job.held_at
    if status == JobStatus.SUSPENDED and job.suspended_at:
        return job.suspended_at
    if status == JobStatus.RUNNING and job.started_at:
        return job.started_at
    # Idle since it was submitted, or since its owner last acted on it (a release).
    return max(t for t in (job.submitted_at, job.acted_at) if t is not None)
