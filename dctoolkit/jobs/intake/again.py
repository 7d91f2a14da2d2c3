"""Running jobs again and changing waiting ones: `./dct resubmit` and `./dct edit` (and the API and portal).

A resubmit goes through the one intake path (`queue.prepare` / `queue.queue`) with the submission's
stored folder as the file source: the same text, the same staged files, a new submission; of a batch,
only the chosen jobs' $(Process) numbers are queued again.

An edit checks each value with the submission builders (`keys.job_fields` on a one-key values
dict) and the job, as changed, against the nodes (`parse.check_nodes`), then changes each job with
one conditional UPDATE (state still waiting, queued or held), so a job the scheduler dispatched
meanwhile is never changed under it; and the edit counts itself under the scheduler lock first
(`scheduling.lock.note_edit`), so a pass planned before it plans again instead of claiming the job
with its old size or placement.
"""

from __future__ import annotations

import posixpath
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Case, F, Value, When

from dctoolkit.jobs import jobpolicy
from dctoolkit.jobs.intake import keys
from dctoolkit.jobs.intake.parse import InputFile, JobSpec, SubmissionError, check_nodes, parse_submission
from dctoolkit.jobs.intake.parse import Submission as ParsedSubmission
from dctoolkit.jobs.intake.queue import (
    FolderFiles,
    Prepared,
    _distinct_refs,
    _storage_names,
    node_offers,
    prepare,
    queue,
    submit_facts,
    unrecorded_folders,
)
from dctoolkit.jobs.models import WAITING_STATES, Job, JobState, Submission
from dctoolkit.jobs.scheduling.lock import note_edit
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.lib.ids import id_ranges
from dctoolkit.operations import audit


class AgainError(ValueError):
    """A resubmit or edit refused; the message says why, for a person.  `fields`: an edit's problems by the
    key as written (each key's messages joined), so that a form shows each at its field."""

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


# --- resubmit ------------------------------------------------------------------------------------


class StoredFiles(FolderFiles):
    """A submission's files as `queue` stored them (`name`, or `N/name` when names clash).

    Read as a folder of files is (copied, never linked: the old submission's purge must not touch the new).
    """

    def __init__(self, folder: Path, stored: dict[str, str]) -> None:
        super().__init__(folder)
        self.stored = stored  # source as written -> the name in the folder

    def named(self, path: str) -> Path:
        return self.folder / self.stored.get(path, Path(path).name)

    def path(self, ref: InputFile) -> Path:
        return self.folder / self.stored.get(ref.source, ref.name)

    def describe(self, ref: InputFile) -> str:
        return ref.name

    def is_executable(self, ref: InputFile) -> bool:
        return True  # it passed this check when it was first submitted

    def copy_to(self, ref: InputFile, dest: Path) -> None:
        shutil.copyfile(self.path(ref), dest)  # a stored copy, made by `queue`: no link of the user's in it

    def listdir(self, path: str) -> list[tuple[str, bool | None]] | None:
        """A `dir/` input's files as they were staged (Submission.files), not the stored folder's, which is flat."""
        folder = path.rstrip("/")
        if f"{folder}/" not in self.stored:
            return None
        return [
            (posixpath.basename(source), False)
            for source, name in self.stored.items()
            if name and posixpath.dirname(source) == folder
        ]

    def unrecorded(self, folder: str) -> bool:
        """Whether the manifest knows nothing of `folder`: no file, no `dir/`, nothing stored under it."""
        return f"{folder}/" not in self.stored and not any(
            source == folder or posixpath.dirname(source) == folder for source in self.stored
        )

    def with_folders(self, folders: Iterable[str]) -> StoredFiles:
        """These files, and each of `folders` as the empty `dir/` it was (a manifest stored before those were
        kept: `queue.unrecorded_folders`)."""
        return StoredFiles(self.folder, {**self.stored, **{f"{folder}/": "" for folder in folders}})


def stored_files(sub: Submission) -> StoredFiles:
    """The file source of a stored submission; AgainError when its files were purged."""
    folder = sub.folder()
    if not folder.is_dir():
        raise AgainError(
            f"submission {sub.pk}'s files were purged (its jobs ended long ago, DCT_RETENTION or './dct purge'); "
            "submit the file again"
        )
    if sub.files:
        return StoredFiles(folder, sub.files)
    # Stored before Submission.files: where each file went depends on every file it names; parse once to see.
    files = StoredFiles(folder, {})
    try:
        parsed = parse_submission(sub.text, sub.source_name, settings.DCT_MAX_QUEUE, facts=submit_facts(files))
    except SubmissionError as exc:
        raise AgainError(f"submission {sub.pk} cannot be read again here: {exc}") from None
    refs = _refs(parsed)
    return StoredFiles(folder, {ref.source: name for ref, name in _storage_names(refs).items()})


def _refs(parsed: ParsedSubmission) -> list[InputFile]:
    return _distinct_refs([*(ref for job in parsed.jobs for ref in (job.executable, *job.inputs)), *parsed.read_files])


def user_submission(user: AbstractBaseUser, submission_id: int) -> Submission:
    """The submission, if `user` may see it (their own; staff: any); else AgainError, as if it did not exist."""
    subs = Submission.objects.filter(pk=submission_id)
    if not getattr(user, "is_staff", False):
        subs = subs.filter(owner=user)  # type: ignore[misc]
    sub = subs.first()
    if sub is None:
        raise AgainError(f"no submission {submission_id} of yours; './dct jobs --all' lists your jobs")
    return sub


def resubmit_jobs(jobs: Iterable[Job], *, actor: audit.Actor) -> list[Job]:
    """Queue each of `jobs` again (its submission's text and files; per submission, only those jobs'
    processes), as new jobs of new submissions of the same owner, for `actor` (one audit event).
    Raises AgainError; every submission is checked before any is queued."""
    jobs = list(jobs)
    queued = queue_again(jobs)
    target = ("job", jobs[0].pk) if len(jobs) == 1 else ("jobs", id_ranges(j.pk for j in jobs))
    audit.record(actor, "resubmit", target, count=len(queued), jobs=id_ranges(j.pk for j in queued))
    return queued


def queue_again(jobs: list[Job]) -> list[Job]:
    """The work of a resubmit: its new jobs."""
    by_sub: dict[int, tuple[Submission, set[int]]] = {}
    env: dict[int, dict[str, str]] = {}
    for job in jobs:
        entry = by_sub.setdefault(job.submission_id, (job.submission, set()))
        entry[1].add(job.process)
        # The submitter's environment of the first time is gone; what `getenv` copied is in the job's.
        env.setdefault(job.submission_id, {}).update(job.environment)
    if not by_sub:
        raise AgainError("no jobs to submit again")
    ready = []
    for sub, processes in by_sub.values():
        files = stored_files(sub)
        try:
            prepared = prepare(sub.text, sub.source_name, files, env[sub.pk])
        except SubmissionError as exc:
            prepared = _with_empty_folders(sub, files, env[sub.pk], exc)
        full = len(processes) == sub.job_count
        ready.append((prepared, sub.owner, None if full else frozenset(processes)))
    queued: list[Job] = []
    for prepared, owner, chosen in ready:
        try:
            queued += queue(prepared, owner, chosen)
        except SubmissionError as exc:
            raise AgainError(str(exc)) from None
    return queued


def _with_empty_folders(sub: Submission, files: StoredFiles, env: dict[str, str], refused: SubmissionError) -> Prepared:
    """A submission stored before its empty `dir/` inputs were kept in its manifest, prepared with each such
    folder empty, as it was; else AgainError with `refused`, the first refusal."""
    empty = unrecorded_folders(sub.text, sub.source_name, files, files.unrecorded, env) if sub.files else []
    if empty:
        try:
            return prepare(sub.text, sub.source_name, files.with_folders(empty), env)
        except SubmissionError as exc:
            refused = exc
    hint = (
        "; a resubmit reads only the files stored with it: submit the file again" if "not found" in str(refused) else ""
    )
    raise AgainError(f"submission {sub.pk} cannot be queued again: {refused}{hint}") from None


def resubmit_submission(sub: Submission, failed: bool = False, *, actor: audit.Actor) -> list[Job]:
    """The whole submission again, or with `failed` only its failed jobs, for `actor` (one audit event)."""
    jobs = Job.objects.filter(submission=sub).select_related("submission")
    if failed:
        jobs = jobs.filter(state=JobState.FAILED)
        if not jobs.exists():
            raise AgainError(f"submission {sub.pk} has no failed jobs")
    queued = queue_again(list(jobs))
    audit.record(actor, "resubmit", sub, failed=failed, count=len(queued), jobs=id_ranges(j.pk for j in queued))
    return queued


# --- edit ----------------------------------------------------------------------------------------

EDITABLE = (
    "request_cpus",
    "request_memory",
    "request_gpus",
    "request_disk",
    "max_runtime",
    "priority",
    "node",
    "labels",
    "name",
    "start_after",
    "max_retries",
    *jobpolicy.POLICY_KEYS,  # merged into the job's own (`changes_of`)
)
# The JobSpec field each edit gives, and the Job column it is kept in.
_COLUMNS = {
    "request_cpus": "request_cpus",
    "request_memory_mb": "request_memory_mb",
    "request_gpus": "request_gpus",
    "max_runtime_seconds": "max_runtime_seconds",
    "name": "name",
    "max_retries": "max_retries",
    "priority": "priority",
}
NOT_YET = "not available in this version yet"


def _not_built(key: str) -> bool:
    """A contract key this version does not keep on a job (no submission key, or no column for it)."""
    entry = keys.KEYS.get(key)
    return entry is None or entry.use != "job"


def parse_edits(pairs: dict[str, str]) -> dict[str, Any]:
    """The JobSpec fields of `KEY: VALUE` edits, checked by the submission's builders; AgainError
    names every bad one."""
    problems: list[tuple[str, str]] = []  # (the key as written, what is wrong)
    values: dict[str, list[tuple[str, int]]] = {}
    # Each value on a "line" of its own, so that a builder's problem names the key it came from.
    written_at: dict[int, str] = {}
    for line, (written, value) in enumerate(pairs.items(), start=1):
        written_at[line] = written
        key = keys.canonical_key(written) or written
        if key not in EDITABLE:
            problems.append((written, f"not a key that can be edited; edit one of {', '.join(EDITABLE)}"))
        elif _not_built(key):
            problems.append((written, NOT_YET))
        elif not str(value).strip():
            problems.append((written, f"give a value ({written}=VALUE)"))
        else:
            values[key] = [(str(value), line)]
    fields: dict[str, Any] = {}
    if values:
        fields, found = keys.job_fields(values, {})
        problems += [(written_at.get(line, "edit"), message) for line, message in found]
    if problems:
        by_key: dict[str, list[str]] = {}
        for written, message in problems:
            by_key.setdefault(written, []).append(message)
        raise AgainError(
            "; ".join(f"{written}: {message}" for written, message in problems),
            {written: "; ".join(messages) for written, messages in by_key.items()},
        )
    if not pairs:
        raise AgainError(f"nothing to change; give KEY=VALUE, KEY one of {', '.join(EDITABLE)}")
    return fields


def changes_of(job: Job, fields: dict[str, Any]) -> dict[str, Any]:
    """The columns to set on `job` for the edit `fields`."""
    changes = {column: fields[name] for name, column in _COLUMNS.items() if name in fields}
    placement = dict(job.placement)
    if "node" in fields:
        changes["pinned_node"] = fields["node"]
        placement.pop("nodes", None)
    if "nodes" in fields:
        changes["pinned_node"] = ""
        placement["nodes"] = sorted(fields["nodes"])
    if "labels" in fields:
        placement["labels"] = sorted(fields["labels"])
        if not placement["labels"]:
            placement.pop("labels")
    if "request_disk_mb" in fields:
        placement["disk_mb"] = fields["request_disk_mb"]  # kept with the machine choice (Wants.disk_mb)
    if placement != job.placement:
        changes["placement"] = placement
    if "policy" in fields:
        # One expression edited, the job's others kept; the housekeeping reads it if it has a periodic one now.
        policy = {**job.policy, **fields["policy"]}
        changes.update(policy=policy, periodic_policy=jobpolicy.has_periodic(policy))
    if "start_after" in fields:
        # A queued job given a start time waits for it; the housekeeping queues it when it is due
        # (and its dependencies and throttle allow), as for a job submitted with one.
        changes["start_after"] = datetime.fromtimestamp(fields["start_after"], UTC)
        changes["state"] = Case(When(state=JobState.QUEUED, then=Value(JobState.WAITING.value)), default=F("state"))
    return changes


def check_fits(job: Job, changes: dict[str, Any]) -> None:
    """Refuse a change no known node could ever run, naming what exists (as at submit)."""
    after = {**{f: getattr(job, f) for f in ("request_cpus", "request_memory_mb", "request_gpus")}, **changes}
    placement = after.get("placement", job.placement)
    spec = JobSpec(
        name=after.get("name", job.name),
        executable=InputFile(job.executable, job.executable, 1),
        node=after.get("pinned_node", job.pinned_node),
        request_cpus=after["request_cpus"],
        request_memory_mb=after["request_memory_mb"],
        request_gpus=after["request_gpus"],
        container=job.container,
        nodes=tuple(placement.get("nodes", ())),
        labels=tuple(placement.get("labels", ())),
        avoid=tuple(placement.get("avoid", ())),
        gpu_type=placement.get("gpu_type", ""),
        gpu_memory_mb=placement.get("gpu_memory_mb", 0),
        gpu_capability=placement.get("gpu_capability", 0.0),
        request_disk_mb=placement.get("disk_mb") or None,
        requirements=placement.get("requirements", ""),
        rank=placement.get("rank", ""),
    )
    try:
        check_nodes(ParsedSubmission(f"job {job.pk}", (spec,), {}), node_offers())
    except SubmissionError as exc:
        raise AgainError("; ".join(message for _, message in exc.problems)) from None


def wrong_state(job: Job) -> str:
    return f"job {job.pk} is {job.state}: only waiting, queued or held jobs can be edited"


def edit_jobs(jobs: Sequence[Job], pairs: dict[str, str], *, actor: audit.Actor) -> tuple[list[int], dict[int, str]]:
    """Change each of `jobs` by the `pairs` (KEY: VALUE) for `actor`; the ids changed, and why not for the others.

    A bad value refuses everything (AgainError) before any job is changed; a job in another state is
    refused on its own.  Each change is one UPDATE ... WHERE state IN (waiting, queued, held), after
    the edit is counted under the scheduler lock (`note_edit`); the audit trail gets one event per
    changed job (before and after), in the same transaction.
    """
    fields = parse_edits(pairs)
    failures: dict[int, str] = {}
    planned = []
    for job in jobs:
        if job.state not in WAITING_STATES:
            failures[job.pk] = wrong_state(job)
            continue
        changes = changes_of(job, fields)
        check_fits(job, changes)
        planned.append((job, changes))
    changed, events = [], []
    with transaction.atomic():
        if any(changes for _, changes in planned):
            # First: it waits for a pass claiming under the scheduler lock, and makes a plan made before stale.
            note_edit()
        for job, changes in planned:
            if not changes or Job.objects.filter(pk=job.pk, state__in=WAITING_STATES).update(**changes):
                changed.append(job.pk)
                difference = before_after(job, changes)
                if difference["after"]:  # a value set to what it was changes nothing, and is not recorded
                    events.append((job, {"set": pairs, **difference}))
            else:
                job.refresh_from_db(fields=["state"])
                failures[job.pk] = wrong_state(job)
        audit.record_each(actor, "edit", events)
    if changed:
        wake_scheduler()  # a smaller job may fit now
    return changed, failures


def before_after(job: Job, changes: dict[str, Any]) -> dict[str, dict]:
    """The columns `changes` really changes on `job`, before and after, as the audit trail keeps them
    (the state's conditional expression left out: the job's state is its own record)."""
    columns = [
        c for c, value in changes.items() if not hasattr(value, "resolve_expression") and getattr(job, c) != value
    ]
    return {"before": {c: getattr(job, c) for c in columns}, "after": {c: changes[c] for c in columns}}


def edit_pairs(words: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` words of the command line, as a dict; AgainError names a word without '='."""
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key.strip():
            raise AgainError(f"'{word}': write KEY=VALUE, such as request_memory=4G")
        pairs[key.strip()] = value.strip()
    return pairs
