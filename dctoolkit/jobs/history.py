"""Job history: finding past jobs (by state, name, date) and purging old results' files.

Rows stay forever (they carry the accounting); only files in shared storage go.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import datetime, time, timedelta

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .ids import MAX_ID, bounded_int
from .models import FINAL_STATES, Job, JobState, Submission


class FilterError(ValueError):
    """A bad query parameter; the message says which and how to write it."""


def filter_jobs(jobs: QuerySet[Job], params: Mapping[str, str]) -> QuerySet[Job]:
    """Narrow by `state` (comma-separated), `submission`, `name` (contains), `since`/`until` (date or ISO time).

    Raises FilterError naming the bad parameter.
    """
    if params.get("state"):
        states = [s.strip() for s in params["state"].split(",") if s.strip()]
        unknown = [s for s in states if s not in JobState.values]
        if unknown:
            raise FilterError(f"unknown state '{unknown[0]}'; use one of {', '.join(JobState.values)}")
        jobs = jobs.filter(state__in=states)
    if params.get("submission"):
        # Bounded: a 20-digit number would overflow the database's integer (a 500).
        number = bounded_int(params["submission"], 1, MAX_ID)
        if number is None:
            raise FilterError("submission must be a submission's number, as a job's 'submission' field shows")
        jobs = jobs.filter(submission_id=number)
    if params.get("name"):
        jobs = jobs.filter(name__icontains=params["name"])
    if params.get("since"):
        jobs = jobs.filter(submitted_at__gte=parse_when(params["since"], "since", end_of_day=False))
    if params.get("until"):
        jobs = jobs.filter(submitted_at__lt=parse_when(params["until"], "until", end_of_day=True))
    return jobs


def parse_when(text: str, name: str, end_of_day: bool) -> datetime:
    """A date (`2026-11-25`: its start, or the next day's start for `until`) or an ISO time."""
    try:
        day = parse_date(text)
        moment = None if day else parse_datetime(text)
    except ValueError:
        moment = day = None
    if day is not None:
        moment = datetime.combine(day, time.min)
        if end_of_day:
            moment += timedelta(days=1)
    if moment is None:
        raise FilterError(f"{name}={text!r} is not a date; write it like 2026-11-25 or 2026-11-25T14:00:00+00:00")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone.get_current_timezone())


def purge_files(cutoff: datetime, dry_run: bool = False) -> tuple[int, int]:
    """Delete the storage folders of jobs that ended before `cutoff`, and of submissions all of whose
    jobs did; the rows stay.  Returns (jobs whose files went, bytes freed)."""
    old = Job.objects.filter(state__in=FINAL_STATES, finished_at__lt=cutoff)
    purged = freed = 0
    for job in old.only("id").iterator():
        size = _remove(job.folder(), dry_run)
        if size is not None:
            purged += 1
            freed += size
    # A submission's inputs go once none of its jobs is young or unfinished.
    keep = set(
        Job.objects.exclude(state__in=FINAL_STATES, finished_at__lt=cutoff).values_list("submission_id", flat=True)
    )
    for sub_id in set(old.values_list("submission_id", flat=True)) - keep:
        freed += _remove(Submission(id=sub_id).folder(), dry_run) or 0
    return purged, freed


def _remove(folder, dry_run: bool) -> int | None:
    """Bytes in `folder` (removed unless dry_run), or None when it is not there."""
    if not folder.is_dir():
        return None
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    if not dry_run:
        shutil.rmtree(folder, ignore_errors=True)
    return size
