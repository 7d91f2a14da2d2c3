"""Queue a parsed submission: check its files and requests, copy its files to storage, add the jobs.

The same function serves the command line (files on disk beside the
submission file) and the API and portal (uploaded files, matched by name).
Either every job is queued or none is.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from dctoolkit.nodes.models import Node

from .dispatch import wake_scheduler
from .models import Job, Submission
from .submission import (
    InputFile,
    JobSpec,
    NodeOffer,
    SubmissionError,
    check_nodes,
    executable_problem,
    parse_submission,
)
from .submission import Submission as ParsedSubmission

# Biggest single file a submission may bring (the API answers 413 above it).
MAX_FILE_BYTES = 2 * 1024**3


class FileSource(Protocol):
    """Where a submission's named files come from."""

    def describe(self, ref: InputFile) -> str: ...
    def exists(self, ref: InputFile) -> bool: ...
    def head(self, ref: InputFile) -> bytes: ...
    def is_executable(self, ref: InputFile) -> bool: ...
    def copy_to(self, ref: InputFile, dest: Path) -> None: ...


class FolderFiles:
    """Files on disk, relative to the submission file's folder (absolute paths allowed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, ref: InputFile) -> Path:
        return self.folder / os.path.expanduser(ref.source)

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
        shutil.copyfile(self.path(ref), dest)


class UploadedFiles:
    """Files uploaded with the submission (API, portal), matched by file name."""

    def __init__(self, files: dict[str, BinaryIO]) -> None:
        self.files = files

    def describe(self, ref: InputFile) -> str:
        return ref.name

    def exists(self, ref: InputFile) -> bool:
        return ref.name in self.files

    def head(self, ref: InputFile) -> bytes:
        f = self.files[ref.name]
        f.seek(0)
        data = f.read(2)
        f.seek(0)
        return data

    def is_executable(self, ref: InputFile) -> bool:
        # An upload has lost its run bit; a compiled program (ELF) is plainly meant to run.
        f = self.files[ref.name]
        f.seek(0)
        magic = f.read(4)
        f.seek(0)
        return magic == b"\x7fELF"

    def copy_to(self, ref: InputFile, dest: Path) -> None:
        f = self.files[ref.name]
        f.seek(0)
        with open(dest, "wb") as out:
            shutil.copyfileobj(f, out, 1024 * 1024)


def node_offers() -> list[NodeOffer]:
    """What each known node could ever give a job."""
    return [NodeOffer(n.name, n.slots, n.memory_total_mb, len(n.gpus), tuple(n.containers)) for n in Node.objects.all()]


@dataclass(frozen=True)
class Prepared:
    """A submission that passed every check and only needs storing."""

    text: str
    source_name: str
    submission: ParsedSubmission
    refs: list[InputFile]
    files: FileSource


def prepare(text: str, source_name: str, files: FileSource) -> Prepared:
    """Parse and check a submission against its files and the known nodes; raises SubmissionError."""
    parsed = parse_submission(text, source_name, max_queue=settings.DCT_MAX_QUEUE)
    refs = check_files(parsed, source_name, files)
    check_nodes(parsed, node_offers())
    return Prepared(text, source_name, parsed, refs, files)


def check_files(parsed: ParsedSubmission, source_name: str, files: FileSource) -> list[InputFile]:
    """The distinct files a submission names, after checking they exist and the executable can run.

    Raises SubmissionError.  Needs no database (the remote command line uses it before uploading).
    """
    refs = _distinct_refs(ref for job in parsed.jobs for ref in (job.executable, *job.inputs))
    for ref in refs:
        if not files.exists(ref):
            raise SubmissionError(
                source_name, ref.line, f"file '{files.describe(ref)}' not found; check the name and that it exists"
            )
    exe = parsed.jobs[0].executable
    problem = executable_problem(exe.name, files.head(exe), files.is_executable(exe))
    if problem:
        raise SubmissionError(source_name, exe.line, problem)
    return refs


def queue(prepared: Prepared, owner: AbstractBaseUser) -> list[Job]:
    """Copy a prepared submission's files to storage and queue its jobs, all or nothing."""
    now = timezone.now()
    first = prepared.submission.jobs[0]
    with transaction.atomic():
        # mypy: the project's user model is auth.User; callers pass request.user or the acting user.
        sub = Submission.objects.create(  # type: ignore[misc]
            owner=owner,
            source_name=prepared.source_name[:255],
            text=prepared.text,
            email=first.email,
            job_count=len(prepared.submission.jobs),
        )
        folder = sub.folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stored = _storage_names(prepared.refs)
            for ref in prepared.refs:
                dest = folder / stored[ref]
                dest.parent.mkdir(exist_ok=True)
                prepared.files.copy_to(ref, dest)
            jobs = Job.objects.bulk_create(
                [_job_row(spec, sub, owner, stored, now) for spec in prepared.submission.jobs], batch_size=2000
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    if jobs and jobs[0].pk is None:  # backends without RETURNING (MySQL): read the ids back
        jobs = list(Job.objects.filter(submission=sub).order_by("id"))
    wake_scheduler()
    return jobs


def submit(text: str, source_name: str, owner: AbstractBaseUser, files: FileSource) -> list[Job]:
    """Queue every job of a submission file, or raise SubmissionError and queue nothing."""
    return queue(prepare(text, source_name, files), owner)


def _job_row(spec: JobSpec, sub: Submission, owner: AbstractBaseUser, stored: dict, now) -> Job:
    # mypy: the project's user model is auth.User; callers pass request.user or the acting user.
    return Job(  # type: ignore[misc]
        submission=sub,
        owner=owner,
        name=spec.name,
        process=spec.process,
        executable=stored[spec.executable],
        arguments=list(spec.arguments),
        inputs=[stored[i] for i in spec.inputs],
        environment=spec.environment,
        output=list(spec.output),
        email=spec.email,
        pinned_node=spec.node,
        request_cpus=spec.request_cpus,
        request_memory_mb=spec.request_memory_mb,
        request_gpus=spec.request_gpus,
        max_runtime_seconds=spec.max_runtime_seconds,
        network=spec.network,
        container=spec.container,
        submitted_at=now,
    )


def _distinct_refs(refs: Iterable[InputFile]) -> list[InputFile]:
    return list(dict.fromkeys(refs))


def _storage_names(refs: list[InputFile]) -> dict[InputFile, str]:
    """Where each file is kept in the submission folder: its name, or `N/name` when
    different files of one batch share a name (data = run$(Process)/in.csv)."""
    by_name: dict[str, set[str]] = {}
    for ref in refs:
        by_name.setdefault(ref.name, set()).add(ref.source)
    number = {source: i for i, source in enumerate(sorted({ref.source for ref in refs}))}
    return {ref: ref.name if len(by_name[ref.name]) == 1 else f"{number[ref.source]}/{ref.name}" for ref in refs}
