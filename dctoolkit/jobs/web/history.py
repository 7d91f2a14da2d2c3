"""Job history: finding past jobs (by state, name, date) and purging old results' files.

Rows stay forever (they carry the accounting); only files in shared storage go.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import datetime, time, timedelta

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from dctoolkit.jobs.models import FINAL_STATES, Job, JobState, Submission
from dctoolkit.lib.ids import MAX_ID, bounded_int
from dctoolkit.lib.pages import count_cap, shown_count

# Most ids one `?id=` asks for (a workflow tool's whole set of jobs in one request).
MAX_IDS = 1000


class FilterError(ValueError):
    """A bad query parameter; the message says which and how to write it."""


def asked_ids(params: Mapping[str, str]) -> list[int] | None:
    """The job ids of `?id=1,2,3` (in order, once each), or None when not asked; FilterError for a bad one."""
    raw = params.get("id")
    if raw is None:
        return None
    ids: list[int] = []
    for text in (t.strip() for t in raw.split(",")):
        number = bounded_int(text, 1, MAX_ID) if text else None
        if number is None:
            raise FilterError(f"id={raw!r}: {text!r} is not a job id; write job ids separated by commas (id=12,13)")
        if number not in ids:
            ids.append(number)
    if len(ids) > MAX_IDS:
        raise FilterError(f"id asks for {len(ids)} jobs; at most {MAX_IDS} a request")
    return ids


def filter_jobs(jobs: QuerySet[Job], params: Mapping[str, str]) -> QuerySet[Job]:
    """Narrow by `id` (comma-separated), `state` (comma-separated), `submission`, `name` (contains),
    `since`/`until` (date or ISO time).

    Raises FilterError naming the bad parameter.
    """
    ids = asked_ids(params)
    if ids is not None:
        jobs = jobs.filter(id__in=ids)
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
    return purge_jobs(list(old.values_list("id", "submission_id")), cutoff, dry_run)


# Submissions looked up at once (SQLite's limit on a query's parameters is 999 in old builds).
_CHUNK = 500


def purge_jobs(rows: list[tuple[int, int]], cutoff: datetime, dry_run: bool = False) -> tuple[int, int]:
    """Delete the folders of the (job id, submission id) `rows`, jobs that ended before `cutoff`, and
    of their submissions once none of a submission's jobs is younger or unfinished.

    The one purge: `./dct purge` (every such job) and the scheduler's
    retention (a batch per round) both call it.  Returns (jobs whose files went, bytes freed).
    """
    purged = freed = 0
    for job_id, _ in rows:
        size = _remove(Job(id=job_id).folder(), dry_run)
        if size is not None:
            purged += 1
            freed += size
    subs = sorted({sub_id for _, sub_id in rows})
    for i in range(0, len(subs), _CHUNK):
        chunk = subs[i : i + _CHUNK]
        # A submission's inputs go once none of its jobs is young or unfinished.
        keep = set(
            Job.objects.filter(submission_id__in=chunk)
            .exclude(state__in=FINAL_STATES, finished_at__lt=cutoff)
            .values_list("submission_id", flat=True)
        )
        for sub_id in set(chunk) - keep:
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


def state_counts(owner_id: int, cap: int | None = None) -> dict[str, str]:
    """state -> how many of `owner_id`'s jobs are in it ("1,234"; "10,000+" past `cap`, pages.COUNT_CAP),
    for the states they have.

    Exact up to `cap`, and never more than `cap + 1` index entries read per
    state, so it costs the same with a million finished jobs as with ten
    thousand (a GROUP BY over the user's jobs reads their whole history).
    One query: per state, a COUNT over at most `cap + 1` rows of the
    (state, owner, -priority, id) index.
    """
    cap = count_cap(cap)
    table = connection.ops.quote_name(Job._meta.db_table)
    states = list(JobState)
    where = "WHERE state = %s AND owner_id = %s LIMIT %s"
    sql = " UNION ALL ".join(
        f"SELECT {i} AS k, COUNT(*) AS n FROM (SELECT 1 FROM {table} {where}) AS c{i}"  # noqa: S608 (names from the model)
        for i in range(len(states))
    )
    params: list[str | int] = []
    for state in states:
        params += [state.value, owner_id, cap + 1]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        counts = dict(cursor.fetchall())
    return {state.value: shown_count(counts[i], cap) for i, state in enumerate(states) if counts.get(i)}
