"""Queue a parsed submission: check its files and requests, copy its files to storage, add the jobs.

The same function serves the command line (files on disk beside the
submission file) and the API and portal (uploaded files, matched by name).
Either every job is queued or none is.
"""

from __future__ import annotations

import errno
import operator
import os
import posixpath
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models.base import ModelState
from django.utils import timezone

from dctoolkit.accounts.granting import folders_of
from dctoolkit.accounts.grants import granted_folder_for, not_granted_message
from dctoolkit.accounts.limits import over_queued
from dctoolkit.accounts.models import Group
from dctoolkit.accounts.usage import memberships, user_caps
from dctoolkit.jobs import eventlog, streams
from dctoolkit.jobs.intake import batch, depends
from dctoolkit.jobs.intake.parse import (
    InputFile,
    JobSpec,
    NodeOffer,
    SubmissionError,
    SubmitFacts,
    check_nodes,
    executable_problem,
    outside_link_message,
    parse_submission,
    resolve_container,
)
from dctoolkit.jobs.intake.parse import Submission as ParsedSubmission
from dctoolkit.jobs.intake.rows import RowWriter
from dctoolkit.jobs.jobpolicy import HOLD_SUBMITTED, has_periodic
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.scheduling.classads import arch_name
from dctoolkit.jobs.scheduling.matching import Wants, gpu_kinds
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.lib.collector import collector_paused
from dctoolkit.lib.fastsql import Compiled
from dctoolkit.nodes.models import Node
from dctoolkit.operations.storage import check_quota

# Biggest single file a submission may bring (the API answers 413 above it).
MAX_FILE_BYTES = 2 * 1024**3
# A `queue ... from FILE` item list is read whole at submission: at most this many bytes.
MAX_ITEM_LIST_BYTES = 1024 * 1024


class FileSource(Protocol):
    """Where a submission's named files come from."""

    def describe(self, ref: InputFile) -> str: ...
    def exists(self, ref: InputFile) -> bool: ...
    def head(self, ref: InputFile) -> bytes: ...
    def is_executable(self, ref: InputFile) -> bool: ...
    def copy_to(self, ref: InputFile, dest: Path) -> None: ...
    def read_text(self, path: str) -> str | None: ...
    def names(self) -> list[tuple[str, bool]]: ...
    def listdir(self, path: str) -> list[tuple[str, bool | None]] | None: ...


class LinkOutError(OSError):
    """A file of a `dir/` input turned out, at copy time, to be a link leading out of its folder."""


def lies_in(path: str | Path, folder: str | Path) -> bool:
    """Whether `path`, every link followed, is strictly inside `folder` (itself resolved)."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real.startswith(root.rstrip(os.sep) + os.sep)


class FolderFiles:
    """Files on disk, relative to the submission file's folder (absolute paths allowed).

    `listed`: each `dir/` folder's identity (device, inode) when it was listed, by its path as named; shared
    by the FolderFiles of one submission (a DAG's nodes), so the copy reads from the very folder checked.
    """

    def __init__(self, folder: Path, listed: dict[str, tuple[int, int, str]] | None = None) -> None:
        self.folder = folder
        self.listed = {} if listed is None else listed

    def named(self, path: str) -> Path:
        """Where a name the submission wrote lies on disk."""
        return self.folder / os.path.expanduser(path)

    def path(self, ref: InputFile) -> Path:
        return self.named(ref.source)

    def describe(self, ref: InputFile) -> str:
        return str(self.path(ref))

    def exists(self, ref: InputFile) -> bool:
        return self.path(ref).is_file()

    def head(self, ref: InputFile) -> bytes:
        with open(self.path(ref), "rb") as f:
            return f.read(2)

    def is_executable(self, ref: InputFile) -> bool:
        return bool(self.path(ref).stat().st_mode & stat.S_IXUSR)

    def copy_to(self, ref: InputFile, dest: Path) -> None:
        if not ref.within:
            shutil.copyfile(self.path(ref), dest)
            return
        # A `dir/` input's file.  Its folder was checked when listed; a path checked again now could be
        # changed again before it is opened (a folder above the file swapped for a link), so nothing is
        # opened by path below the folder: the folder is opened once and must be the one listed, and the
        # file is opened in it by name, through no link (`open_in_folder`).
        folder = self.named(ref.within)
        with _open_listed_folder(folder, self.listed) as folder_fd:
            real = self.listed[str(folder)][2]
            fd = open_in_folder(folder_fd, PurePosixPath(ref.source).name, str(self.path(ref)), real)
        with os.fdopen(fd, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)

    def read_text(self, path: str) -> str | None:
        target = self.named(path)
        if not target.is_file() or target.stat().st_size > MAX_ITEM_LIST_BYTES:
            return None
        return target.read_text(errors="replace")

    def names(self) -> list[tuple[str, bool]]:
        return [(entry.name, entry.is_dir()) for entry in os.scandir(self.folder)]

    def listdir(self, path: str) -> list[tuple[str, bool | None]] | None:
        target = self.named(path)
        if not target.is_dir():
            return None
        # Listed through one descriptor: the folder recorded (the one the copy must read from, and its real
        # path, for a link in it to an absolute path inside) is the folder whose entries are listed.
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            found = os.fstat(fd)
            self.listed[str(target)] = (found.st_dev, found.st_ino, os.path.realpath(target))
            # A link is listed as what it leads to when that lies in the folder, else as None (refused by the
            # parser; the copy checks each link again, in the folder listed).
            return [
                (e.name, None if e.is_symlink() and not lies_in(target / e.name, target) else e.is_dir())
                for e in os.scandir(fd)
            ]
        finally:
            os.close(fd)


@contextmanager
def _open_listed_folder(folder: Path, listed: dict[str, tuple[int, int, str]]) -> Iterator[int]:
    """A descriptor of `folder`, which must be the folder listed under that name (LinkOutError if it was
    replaced since, by a link or another folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise LinkOutError(errno.ELOOP, f"its folder cannot be opened ({exc.strerror})", str(folder)) from None
    try:
        found = os.fstat(fd)
        if listed.get(str(folder), (None, None))[:2] != (found.st_dev, found.st_ino):
            raise LinkOutError(errno.ELOOP, "its folder was replaced since it was listed", str(folder))
        yield fd
    finally:
        os.close(fd)


# The most links followed inside a `dir/` folder for one file (a link to a link ... to a file in it).
MAX_FOLDER_LINKS = 8
_IN_FOLDER = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO is not waited on
_DIR_IN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_in_folder(folder_fd: int, name: str, shown: str, real_folder: str = "") -> int:
    """A read descriptor of the plain file `name` in the folder `folder_fd`, walked one component at a time
    with O_NOFOLLOW (os.open with dir_fd), so no change of a path outside the folder can redirect it.

    A link is followed only to a file inside the folder: relative and not above it, or absolute under
    `real_folder` (the folder's resolved path when it was listed).  LinkOutError for a link out, a chain of
    more than MAX_FOLDER_LINKS, or anything but a plain file.
    """
    path = name
    for _ in range(MAX_FOLDER_LINKS + 1):
        *dirs, last = path.split("/")
        opened: list[int] = []
        try:
            at = folder_fd
            for part in dirs:
                at = os.open(part, _DIR_IN_FOLDER, dir_fd=at)
                opened.append(at)
            try:
                fd = os.open(last, _IN_FOLDER, dir_fd=at)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                path = _inside(posixpath.join(*dirs, os.readlink(last, dir_fd=at)), real_folder, shown)
                continue
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link (or a file) where a folder was walked
                raise LinkOutError(errno.ELOOP, "a link out of its folder", shown) from None
            raise
        finally:
            for dir_fd in opened:
                os.close(dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LinkOutError(errno.ELOOP, "not a plain file", shown)
        return fd
    raise LinkOutError(errno.ELOOP, "a chain of links", shown)


def _inside(target: str, real_folder: str, shown: str) -> str:
    """A link's target as a path relative to its folder; LinkOutError when it leads out of it."""
    if target.startswith("/"):
        prefix = real_folder.rstrip("/") + "/"
        target = posixpath.normpath(target)
        if not real_folder or not target.startswith(prefix):
            raise LinkOutError(errno.ELOOP, "a link out of its folder", shown)
        target = target[len(prefix) :]
    target = posixpath.normpath(target)
    if target in (".", "..") or target.startswith("../"):
        raise LinkOutError(errno.ELOOP, "a link out of its folder", shown)
    return target


class UploadedFiles:
    """Files uploaded with the submission (API, portal), keyed by the path they were sent with.

    A file sent with its path relative to the submission file's folder
    (`data/a.txt`: a folder upload) is matched by that path, so `dir/` finds
    the files of `dir`; a file sent by its name alone is matched by the file
    name of whatever path the submission names, as before; a folder sent
    with no file (`folders`) is an empty one.
    """

    def __init__(self, files: dict[str, BinaryIO], folders: frozenset[str] = frozenset()) -> None:
        self.files = files
        self.folders = folders  # sent with no file in them (the API's `dirs`: an empty `dir/` input)

    def key(self, path: str) -> str:
        """The upload a path written in the submission stands for: by its path when sent so, else its name."""
        relative = path.removeprefix("./")
        return relative if relative in self.files else Path(path).name

    def _file(self, ref: InputFile) -> BinaryIO:
        f = self.files[self.key(ref.source)]
        f.seek(0)
        return f

    def describe(self, ref: InputFile) -> str:
        return self.key(ref.source)

    def exists(self, ref: InputFile) -> bool:
        return self.key(ref.source) in self.files

    def head(self, ref: InputFile) -> bytes:
        f = self._file(ref)
        data = f.read(2)
        f.seek(0)
        return data

    def is_executable(self, ref: InputFile) -> bool:
        # An upload has lost its run bit; a compiled program (ELF) is plainly meant to run.
        f = self._file(ref)
        magic = f.read(4)
        f.seek(0)
        return magic == b"\x7fELF"

    def copy_to(self, ref: InputFile, dest: Path) -> None:
        f = self._file(ref)
        with open(dest, "wb") as out:
            shutil.copyfileobj(f, out, 1024 * 1024)

    def read_text(self, path: str) -> str | None:
        f = self.files.get(self.key(path))
        if f is None:
            return None
        f.seek(0)
        data = f.read(MAX_ITEM_LIST_BYTES + 1)
        f.seek(0)
        return None if len(data) > MAX_ITEM_LIST_BYTES else data.decode(errors="replace")

    def names(self) -> list[tuple[str, bool]]:
        return self._entries("")

    def listdir(self, path: str) -> list[tuple[str, bool | None]] | None:
        folder = path.removeprefix("./").strip("/")
        entries: list[tuple[str, bool | None]] = list(self._entries(folder + "/"))  # an upload holds no links
        return entries if entries or folder in self.folders else None

    def _entries(self, prefix: str) -> list[tuple[str, bool]]:
        """What lies directly in the uploaded folder `prefix` ("" for the top): (name, is a folder)."""
        entries: dict[str, bool] = {}
        for key in self.files:
            if key.startswith(prefix):
                name, slash, _ = key[len(prefix) :].partition("/")
                entries[name] = entries.get(name, False) or bool(slash)
        return sorted(entries.items())


class WithScript:
    """A batch script's files: the script itself (the executable) comes from the submission's text, and
    the `srun` helper (batch.SRUN_HELPER) from the intake; the rest from `files`.  A script with no '#!'
    line is staged with '#!/bin/sh' first, as PBS runs it."""

    def __init__(self, files: FileSource, name: str, text: str, needs_shell: bool) -> None:
        self.files = files
        self.own = {
            name: (("#!/bin/sh\n" if needs_shell else "") + text).encode(),
            batch.SRUN_HELPER: batch.SRUN_BASH.encode(),
        }

    def _mine(self, ref: InputFile) -> bytes | None:
        return self.own.get(ref.source)

    def describe(self, ref: InputFile) -> str:
        return ref.name if self._mine(ref) is not None else self.files.describe(ref)

    def exists(self, ref: InputFile) -> bool:
        return self._mine(ref) is not None or self.files.exists(ref)

    def head(self, ref: InputFile) -> bytes:
        data = self._mine(ref)
        return data[:2] if data is not None else self.files.head(ref)

    def is_executable(self, ref: InputFile) -> bool:
        return self._mine(ref) is not None or self.files.is_executable(ref)

    def copy_to(self, ref: InputFile, dest: Path) -> None:
        data = self._mine(ref)
        if data is not None:
            dest.write_bytes(data)
        else:
            self.files.copy_to(ref, dest)

    def read_text(self, path: str) -> str | None:
        return self.files.read_text(path)

    def names(self) -> list[tuple[str, bool]]:
        return self.files.names()

    def listdir(self, path: str) -> list[tuple[str, bool | None]] | None:
        return self.files.listdir(path)


def with_script(parsed: ParsedSubmission, text: str, files: FileSource) -> FileSource:
    """`files`, and for a batch script the script itself, served from the submission's text."""
    return WithScript(files, parsed.script, text, parsed.script_needs_shell) if parsed.script else files


def node_offers() -> list[NodeOffer]:
    """What each known node could ever give a job."""
    return [
        NodeOffer(
            name,
            slots,
            memory_total_mb,
            len(gpus),
            tuple(containers),
            disk_free_mb,
            labels=frozenset(labels),
            gpu_kinds=gpu_kinds(gpus),
            arch=arch_name(arch),
        )
        for name, slots, memory_total_mb, gpus, containers, disk_free_mb, labels, arch in NODE_OFFERS.values()
    ]


# The columns of every node `node_offers` reads (compiled once: every submission checks its requests with them).
NODE_OFFERS = Compiled(
    lambda: Node.objects.values_list(
        "name", "slots", "memory_total_mb", "gpus", "containers", "disk_free_mb", "labels", "arch"
    )
)


@dataclass(frozen=True)
class Prepared:
    """A submission that passed every check and only needs storing."""

    text: str
    source_name: str
    submission: ParsedSubmission
    refs: list[InputFile]
    files: FileSource
    env: dict[str, str]


def submit_facts(files: FileSource, env: dict[str, str] | None = None) -> SubmitFacts:
    """What a submission may read beyond its text: its files' item lists, names and folders, and `env` (the
    submitter's environment: the command line's own; none through the API and portal)."""
    return SubmitFacts(read_text=files.read_text, names=files.names, env=env or {}, listdir=files.listdir)


def prepare(text: str, source_name: str, files: FileSource, env: dict[str, str] | None = None) -> Prepared:
    """Parse and check a submission against its files and the known nodes; raises SubmissionError."""
    parsed = parse_submission(text, source_name, max_queue=settings.DCT_MAX_QUEUE, facts=submit_facts(files, env))
    files = with_script(parsed, text, files)
    refs = check_files(parsed, source_name, files)
    check_nodes(parsed, node_offers())
    return Prepared(text, source_name, parsed, refs, files, env or {})


def unrecorded_folders(
    text: str, source_name: str, files: FileSource, unrecorded: Callable[[str], bool], env: dict[str, str]
) -> list[str]:
    """The `dir/` inputs `text` names that a stored manifest kept before empty folders were recorded in it (no
    entry: `unrecorded(name)`, nothing stored under it), as `files` lists them: such a folder was empty when
    it was submitted, since a `dir/` that was no folder was refused then.  Nothing is read for them (no link
    is followed, nothing outside the stored files is reached); [] when a name could differ from the one
    checked then ($ENV(...): the submitter's environment is gone) or the text names a file that is missing."""
    if "$env(" in text.lower():
        return []

    def listdir(path: str) -> list[tuple[str, bool | None]] | None:
        found = files.listdir(path)
        return [] if found is None and unrecorded(path.rstrip("/")) else found

    facts = SubmitFacts(read_text=files.read_text, names=files.names, env=env, listdir=listdir)
    try:
        parsed = parse_submission(text, source_name, max_queue=settings.DCT_MAX_QUEUE, facts=facts)
    except SubmissionError:
        return []  # a plain file missing (then it reads as an empty folder and is refused): not an old folder
    named = {folder for job in parsed.jobs for folder in job.input_folders}
    return sorted(folder for folder in named if files.listdir(folder) is None)


def check_files(parsed: ParsedSubmission, source_name: str, files: FileSource) -> list[InputFile]:
    """The distinct files a submission names, after checking they exist and the executable can run.

    Raises SubmissionError.  Needs no database (the remote command line uses it before uploading).
    """
    refs = _distinct_refs([*(ref for job in parsed.jobs for ref in (job.executable, *job.inputs)), *parsed.read_files])
    for ref in refs:
        if not files.exists(ref):
            raise SubmissionError(
                source_name, ref.line, f"file '{files.describe(ref)}' not found; check the name and that it exists"
            )
    if not parsed.jobs:
        return refs
    exe = parsed.jobs[0].executable
    problem = executable_problem(exe.name, files.head(exe), files.is_executable(exe))
    if problem:
        raise SubmissionError(source_name, exe.line, problem)
    return refs


def check_queued_cap(owner: AbstractBaseUser, prepared: Prepared, groups: list[tuple] | None = None) -> None:
    """Refuse a submission that would take its owner over their cap of waiting, queued and held jobs
    (DCT_MAX_QUEUED_JOBS, `./dct limits`), at its `queue` line; nothing is queued.  `groups`: the owner's
    `usage.memberships`, when read already."""
    groups = memberships(owner.pk) if groups is None else groups
    caps = user_caps(owner.pk, groups)
    if caps.queued_jobs is None:
        return
    queued = Job.objects.filter(owner_id=owner.pk, state__in=QUEUED_CAP_STATES).count()
    first = groups[0][1] if groups else ""
    refusal = over_queued(caps, queued, len(prepared.submission.jobs), owner.get_username(), first)
    if refusal:
        raise SubmissionError(prepared.source_name, prepared.submission.line_of("queue"), refusal)


# What the queued cap counts (the contract: waiting, queued and held jobs).
QUEUED_CAP_STATES = (JobState.WAITING, JobState.QUEUED, JobState.HELD)


def queue(prepared: Prepared, owner: AbstractBaseUser, processes: frozenset[int] | None = None) -> list[Job]:
    """Copy a prepared submission's files to storage and queue its jobs, all or nothing; with
    `processes`, only the jobs of those $(Process) numbers (a resubmit of some jobs of a batch).

    Raises QuotaExceededError (a SubmissionError) when the owner's files are over DCT_USER_QUOTA.
    """
    check_quota(owner.pk, prepared.source_name)
    now = timezone.now()
    if processes is not None:
        prepared = replace(prepared, submission=_only(prepared.submission, processes))
    if not prepared.submission.jobs:
        return []  # `queue 0`: nothing to queue, which is not an error (HTCondor's meaning)
    groups = memberships(owner.pk)
    check_queued_cap(owner, prepared, groups)
    first = prepared.submission.jobs[0]
    parents = depends.parents_of(prepared.submission, owner)  # SubmissionError before anything is made
    check_grants(prepared.submission, owner)
    charged = check_groups(prepared.submission, owner, groups)
    state = JobState.WAITING if parents else JobState.QUEUED
    parsed = prepared.submission
    stored = _storage_names(prepared.refs)
    with transaction.atomic():
        # mypy: the project's user model is auth.User; callers pass request.user or the acting user.
        sub = Submission.objects.create(  # type: ignore[misc]
            owner=owner,
            source_name=prepared.source_name[:255],
            text=prepared.text,
            email=first.email if first.notification != "never" else "",
            notification=first.notification if first.notification == "error" else "",
            job_count=len(parsed.jobs),
            # Where each file is stored, and the `dir/` folders it came from: what a resubmit reads back.
            files=stored_manifest(prepared.refs, stored, parsed.jobs),
        )
        folder = sub.folder()
        if parsed.uses_cluster:
            # $(Cluster) is the submission's id, known only now: the same text and facts, parsed again.
            facts = submit_facts(prepared.files, prepared.env)
            parsed = parse_submission(
                prepared.text, prepared.source_name, settings.DCT_MAX_QUEUE, facts=facts, cluster=sub.pk
            )
            if processes is not None:
                parsed = _only(parsed, processes)
            manifest = stored_manifest(prepared.refs, stored, parsed.jobs)  # its `dir/` folders may name it
            if manifest != sub.files:
                sub.files = manifest
                sub.save(update_fields=["files"])
        # container_image may name a root by its folder name: the row keeps the offered path.
        wants_container = any(job.container for job in parsed.jobs)
        offered = sorted({c for n in node_offers() for c in n.containers}) if wants_container else []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for ref in prepared.refs:
                dest = folder / stored[ref]
                if "/" in stored[ref]:
                    dest.parent.mkdir(exist_ok=True)
                try:
                    prepared.files.copy_to(ref, dest)
                except LinkOutError:
                    raise SubmissionError(
                        prepared.source_name, ref.line, outside_link_message(ref.source, ref.within)
                    ) from None
            with collector_paused():
                jobs = _add_jobs(
                    parsed.jobs,
                    sub,
                    owner,
                    lambda spec: _spec_values(spec, owner, stored, now, offered, state, charged[spec.accounting_group]),
                )
            if parents:
                depends.add_edges(jobs, parents)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    logged = [job.process for job in parsed.jobs if job.log]
    if logged:
        # HTCondor's `log = NAME`: the submit event of each job opens the submission's event log.
        eventlog.append(folder, "".join(eventlog.submitted(sub.pk, process, now) for process in logged))
    wake_scheduler()
    return jobs


def check_grants(parsed: ParsedSubmission, owner: AbstractBaseUser) -> None:
    """Raise SubmissionError, naming the line and the path, when a job would start in a folder (`initialdir
    = /PATH`, `--chdir`) that is not granted to `owner`: every such folder, in one message."""
    wanted = sorted({job.chdir for job in parsed.jobs if job.chdir})
    if not wanted:
        return
    grants = folders_of(owner.pk)
    refused = [path for path in wanted if granted_folder_for(path, grants) is None]
    if refused:
        user = owner.get_username()
        raise SubmissionError(
            parsed.source,
            parsed.line_of("initialdir"),
            "; ".join(not_granted_message(p, user, grants) for p in refused),
        )


def check_groups(
    parsed: ParsedSubmission, owner: AbstractBaseUser, groups: list[tuple] | None = None
) -> dict[str, int | None]:
    """accounting_group name -> the group id its jobs charge ("" -> the owner's first group, or None: in none).
    `groups`: the owner's `usage.memberships`, when read already.

    Raises SubmissionError at the `accounting_group` line when a group named does not exist or `owner` is
    not in it, naming the groups they are in; nothing is queued."""
    mine = [row[:2] for row in (memberships(owner.pk) if groups is None else groups)]
    by_name = {name: gid for gid, name in mine}
    charged: dict[str, int | None] = {"": mine[0][0] if mine else None}
    for name in sorted({job.accounting_group for job in parsed.jobs if job.accounting_group}):
        if name in by_name:
            charged[name] = by_name[name]
            continue
        user = owner.get_username()
        theirs = ", ".join(n for _, n in mine) or "none"
        if Group.objects.filter(name=name).exists():
            why = (
                f"{user} is not a member of group '{name}' (their groups: {theirs}); an operator adds them with "
                f"./dct group member {name} {user}"
            )
        else:
            known = ", ".join(Group.objects.order_by("name").values_list("name", flat=True)) or "none"
            why = f"no group '{name}' (groups: {known}; {user}'s: {theirs})"
        raise SubmissionError(parsed.source, parsed.line_of("accounting_group"), f"accounting_group = {name}: {why}")
    return charged


def _only(parsed: ParsedSubmission, processes: frozenset[int]) -> ParsedSubmission:
    return replace(parsed, jobs=tuple(job for job in parsed.jobs if job.process in processes))


def submit(text: str, source_name: str, owner: AbstractBaseUser, files: FileSource) -> list[Job]:
    """Queue every job of a submission file, or raise SubmissionError and queue nothing."""
    return queue(prepare(text, source_name, files), owner)


def _streams_of(job: JobSpec, user: str) -> dict[str, str]:
    # A Slurm script's `--output=out_%j.txt` names the job's id: its marker stays until the name is read.
    def named(name: str) -> str:
        return name.replace(batch.USER_MARKER, user)

    return streams.to_field(
        streams.Streams(
            stdin=job.stdin,
            stdout=named(job.stdout) or "stdout",
            stderr=named(job.stderr) or "stderr",
            log=job.log,
            initialdir=job.initialdir,
            chdir=job.chdir,
        )
    )


def _spec_values(
    spec: JobSpec,
    owner: AbstractBaseUser,
    stored: dict,
    now: datetime,
    offered: list[str],
    state: JobState,
    group_id: int | None = None,
) -> dict[str, Any]:
    """A job's row from its spec (field attname -> value; the others keep their defaults), submission aside."""
    return {
        "owner_id": owner.pk,
        "name": spec.name,
        "process": spec.process,
        "executable": stored[spec.executable],
        "arguments": list(spec.arguments),
        "inputs": [stored[i] for i in spec.inputs],
        "environment": spec.environment,
        "output": list(spec.output),
        "output_remaps": spec.output_remaps,
        "streams": _streams_of(spec, owner.get_username()),
        "attributes": dict(spec.attributes),
        "email": spec.email,
        "pinned_node": spec.node,
        "request_cpus": spec.request_cpus,
        "request_memory_mb": spec.request_memory_mb,
        "request_gpus": spec.request_gpus,
        "max_runtime_seconds": spec.max_runtime_seconds,
        "network": spec.network,
        "placement": dict(_placement_of(spec.wants)),
        "priority": spec.priority,
        "accounting_group_id": group_id,
        "container": resolve_container(spec.container, offered) or spec.container if spec.container else "",
        "max_retries": spec.max_retries,
        "success_exit_code": spec.success_exit_code,
        "retry_until": spec.retry_until,
        "retry_delay_seconds": spec.retry_delay_seconds,
        "policy": spec.policy,
        "periodic_policy": has_periodic(spec.policy),
        "hold_code": HOLD_SUBMITTED if spec.hold else None,
        "held_at": now if spec.hold else None,
        "start_after": datetime.fromtimestamp(spec.start_after, UTC) if spec.start_after else None,
        "max_running": spec.max_running,
        # A start time or a throttle: the housekeeping queues it when they hold (and its dependencies).
        "state": JobState.HELD if spec.hold else JobState.WAITING if spec.start_after or spec.max_running else state,
        "submitted_at": now,
    }


# The values `_spec_values` makes afresh for each job (a copy each); the others are the spec's own or immutable.
_FRESH = ("arguments", "inputs", "output", "streams", "attributes", "placement")


def _add_jobs(
    specs: Iterable[JobSpec], sub: Submission, owner: AbstractBaseUser, values_of: Callable[[JobSpec], dict[str, Any]]
) -> list[Job]:
    """INSERT a job per spec (rows.RowWriter: one executemany), in order, and the Job instances, ids set.

    The jobs of a plain `queue N` differ only in their $(Process): a spec whose every field is the previous
    one's own object but its process number reuses that row, with only the process column changed."""
    writer = RowWriter(Job)
    rows: list[list[Any]] = []
    made: list[dict[str, Any]] = []
    before: JobSpec | None = None
    values: dict[str, Any] = {}
    row: list[Any] = []
    for spec in specs:
        if before is not None and _copy_of(spec, before):
            values = {**values, "process": spec.process, **{k: values[k].copy() for k in _FRESH}}
            row = row.copy()
            writer.set(row, "process", spec.process)
        else:
            values = {"submission_id": sub.pk, **values_of(spec)}
            row = writer.row(values)
        before = spec
        rows.append(row)
        made.append(values)
    if len(rows) == 1:
        ids = [writer.insert_one(rows[0])]
    else:
        writer.insert(rows)
        ids = list(Job.objects.filter(submission=sub).order_by("id").values_list("id", flat=True))
    if len(ids) != len(made):
        raise RuntimeError(f"submission {sub.pk}: {len(ids)} job rows read back, {len(made)} written")
    # Each instance as bulk_create left it (saved, its submission and owner cached): the attributes of one
    # made by the constructor, with the job's own values, in an instance made as unpickling makes one.
    # mypy: the project's user model is auth.User; callers pass request.user or the acting user.
    template = Job(submission=sub, owner=owner)  # type: ignore[misc]
    base = {k: v for k, v in template.__dict__.items() if k != "_state"}
    cached = template._state.fields_cache
    jobs = []
    for pk, job_values in zip(ids, made, strict=True):
        job = Job.__new__(Job)
        state = ModelState()
        state.adding, state.db, state.fields_cache = False, sub._state.db, dict(cached)
        job.__dict__.update(base, **job_values, _state=state, id=pk)
        jobs.append(job)
    return jobs


def _copy_of(spec: JobSpec, other: JobSpec) -> bool:
    """Whether `spec` holds `other`'s very objects in every field but `process` (a `queue N` copy)."""
    # Both made by JobSpec's __init__ or copied from one (parse._numbered): the same fields, in the same order.
    mine, theirs = list(spec.__dict__.values()), list(other.__dict__.values())
    if len(mine) != len(theirs) or type(spec) is not type(other):
        return False
    del mine[_PROCESS], theirs[_PROCESS]
    return all(map(operator.is_, mine, theirs))


_PROCESS = [f.name for f in dataclass_fields(JobSpec)].index("process")


@lru_cache(maxsize=256)
def _placement_of(wants: Wants) -> dict:
    # Worked out once per distinct choice in a big batch; each row gets its own copy.
    return wants.as_dict()


def _distinct_refs(refs: Iterable[InputFile]) -> list[InputFile]:
    return list(dict.fromkeys(refs))


def stored_manifest(refs: list[InputFile], stored: dict[InputFile, str], specs: Iterable[JobSpec]) -> dict[str, str]:
    """Submission.files: each file's source as written -> its name in the submission folder, and each `dir/`
    folder of `specs` (as `dir/`) -> "" (so that a resubmit lists it as the folder it was, an empty one too)."""
    manifest = {ref.source: stored[ref] for ref in refs}
    manifest.update({f"{folder}/": "" for spec in specs for folder in spec.input_folders})
    return manifest


def _storage_names(refs: list[InputFile]) -> dict[InputFile, str]:
    """Where each file is kept in the submission folder: its name, or `N/name` when
    different files of one batch share a name (data = run$(Process)/in.csv)."""
    by_name: dict[str, set[str]] = {}
    for ref in refs:
        by_name.setdefault(ref.name, set()).add(ref.source)
    number = {source: i for i, source in enumerate(sorted({ref.source for ref in refs}))}
    return {ref: ref.name if len(by_name[ref.name]) == 1 else f"{number[ref.source]}/{ref.name}" for ref in refs}
