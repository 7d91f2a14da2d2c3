"""Which jobs one cancel / hold / release acts on: ids, ranges, a submission, a name glob, a state.

Ids and ranges add up; every other selector narrows (as `scancel`'s filters
do).  `parse_ids` and `glob_pattern` are pure; `select_jobs` turns a
Selection into one queryset over the job table alone (no join), so that the
action is one conditional UPDATE however many jobs it changes.

`act_on_selection` and `act_on_job` are where a person's cancel, hold or
release goes through (the CLI, the API, the portal, the admin): each records
one audit event (`operations.audit`) in the transaction of its UPDATE, one
for 10,000 jobs too (the count, the selector and the ids as ranges).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet

from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.rows import JobRow, job_rows
from dctoolkit.jobs.transitions import CONTROLS
from dctoolkit.lib.ids import MAX_ID, bounded_int, id_ranges
from dctoolkit.operations import audit

_RANGE = re.compile(r"^\s*([0-9]{1,19})\s*-\s*([0-9]{1,19})\s*$")


class SelectionError(ValueError):
    """A selector a person typed that names no jobs the way it should (the message says how to fix it)."""


@dataclass(frozen=True)
class Selection:
    ids: tuple[int, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()
    submission: int | None = None
    name: str = ""
    state: str = ""
    everything: bool = False  # --all: no other selector needed

    @property
    def names_jobs(self) -> bool:
        """Whether it says which jobs at all (an action with no selector is refused, never "all")."""
        return bool(self.ids or self.ranges or self.submission is not None or self.name or self.state)

    @property
    def by_number(self) -> bool:
        """Whether it names jobs by id, range or submission (staff may name another user's)."""
        return bool(self.ids or self.ranges or self.submission is not None)


def parse_ids(texts: list[str]) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """Job ids and ranges (`100-199`, inclusive) from the command line or a request.

    Raises SelectionError naming the first item that is neither.
    """
    ids: list[int] = []
    ranges: list[tuple[int, int]] = []
    for text in texts:
        for item in str(text).split(","):
            if not item.strip():
                continue
            match = _RANGE.match(item)
            if match:
                low, high = (bounded_int(g, 0, MAX_ID) for g in match.groups())
                if low is None or high is None or low > high:
                    raise SelectionError(f"'{item.strip()}' is not a range of job ids; write FIRST-LAST, e.g. 100-199")
                ranges.append((low, high))
                continue
            number = bounded_int(item, 0, MAX_ID)
            if number is None:
                word = item.strip()
                shown = word if len(word) <= 40 else f"{word[:40]}… ({len(word):,} characters)"
                raise SelectionError(
                    f"'{shown}' is not a job id; job ids are numbers, as './dct jobs' shows, or ranges such as 100-199"
                )
            ids.append(number)
    return tuple(ids), tuple(ranges)


def parse_state(text: str) -> str:
    """A job state named on the command line, lower-cased; SelectionError naming the states for another word."""
    state = text.strip().lower()
    if state not in JobState.values:
        raise SelectionError(f"--state {text}: no such state; choose from {', '.join(JobState.values)}")
    return state


def glob_pattern(glob: str) -> str:
    """A regular expression, anchored, for a shell glob (`*`, `?`, `[abc]`) over a job's whole name."""
    out, i = [], 0
    while i < len(glob):
        char, close = glob[i], glob.find("]", i + 1)
        body = glob[i + 1 : close] if close > 0 else ""
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and body not in ("", "!"):
            negate = body.startswith("!")
            body = (body[1:] if negate else body).replace("\\", "\\\\").replace("^", "\\^")
            out.append("[" + ("^" if negate else "") + body + "]")
            i = close
        else:
            out.append(re.escape(char))
        i += 1
    return "^" + "".join(out) + "$"


def select_jobs(jobs: QuerySet[Job], selection: Selection) -> QuerySet[Job]:
    """The jobs of `jobs` that `selection` names (the caller chose `jobs`: the user's own, or what staff see)."""
    if selection.ids or selection.ranges:
        by_number = Q(id__in=selection.ids) if selection.ids else Q()
        for low, high in selection.ranges:
            by_number = by_number | Q(id__range=(low, high)) if by_number else Q(id__range=(low, high))
        jobs = jobs.filter(by_number)
    if selection.submission is not None:
        jobs = jobs.filter(submission_id=selection.submission)
    if selection.name:
        has_wildcard = any(c in selection.name for c in "*?[")
        jobs = (
            jobs.filter(name__regex=glob_pattern(selection.name)) if has_wildcard else jobs.filter(name=selection.name)
        )
    if selection.state:
        jobs = jobs.filter(state=selection.state)
    return jobs


def jobs_to_act_on(user, selection: Selection) -> QuerySet[Job]:
    """The jobs `selection` may reach for `user`: their own; staff naming jobs by number reach anyone's.

    Raises SelectionError for a submission `user` may not see (the same words
    as for one that does not exist).
    """
    jobs = Job.objects.all()
    staff_by_number = selection.by_number and user.is_staff
    if not staff_by_number:
        jobs = jobs.filter(owner=user)
    if selection.submission is not None:
        submissions = Submission.objects.filter(id=selection.submission)
        if not staff_by_number:
            submissions = submissions.filter(owner=user)
        if not submissions.exists():
            raise SelectionError(f"no submission {selection.submission} of yours; './dct jobs --all' lists your jobs")
    return jobs


def act_on_selection(
    verb: str, jobs: QuerySet[Job], selection: Selection, now: datetime, *, actor: audit.Actor
) -> list[JobRow]:
    """Apply one action (CONTROLS[verb], one UPDATE) to the jobs of `jobs` that `selection` names, for
    `actor`; the jobs it changed, in their new state, as plain rows in id order (`rows.job_rows`:
    10,000 model instances would cost more than the action).

    The changed ones are those the action stamped with `acted_at = now`
    (the state selector is dropped for that read: they have left that state).
    """
    with transaction.atomic():
        count = CONTROLS[verb].act_many(select_jobs(jobs, selection), now)
        if not count:
            return []
        changed = select_jobs(jobs, replace(selection, state="")).filter(acted_at=now)
        ids = list(changed.values_list("id", flat=True))
        audit.record(actor, verb, target_of(selection, ids), count=count, jobs=id_ranges(ids),
                     selection=described(selection))  # fmt: skip
    return job_rows(changed)


def act_on_job(verb: str, job: Job, *, actor: audit.Actor) -> bool:
    """CONTROLS[verb] for one job, for `actor` (the API's, the portal's and the admin's per-job buttons):
    True when it changed."""
    with transaction.atomic():
        changed = CONTROLS[verb].act(job)
        if changed:
            audit.record(actor, verb, job)
    return changed


def target_of(selection: Selection, ids: list[int]) -> tuple[str, object]:
    """What an audit event names as the target of a bulk action: the one job, the submission, or the ids."""
    if len(ids) == 1:
        return "job", ids[0]
    if selection == Selection(submission=selection.submission):
        return "submission", selection.submission
    return "jobs", id_ranges(ids)


def described(selection: Selection) -> dict:
    """The selectors that were given, as the audit trail keeps them (ids as ranges)."""
    shown: dict = {}
    if selection.ids:
        shown["ids"] = id_ranges(selection.ids)
    if selection.ranges:
        shown["ranges"] = ",".join(f"{low}-{high}" for low, high in selection.ranges)
    if selection.submission is not None:
        shown["submission"] = selection.submission
    shown.update({key: value for key in ("name", "state") if (value := getattr(selection, key))})
    if selection.everything:
        shown["all"] = True
    return shown
