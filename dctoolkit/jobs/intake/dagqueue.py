"""Queue a DAG file: check it and every node's submit file, copy what the nodes need to storage, add the rows.

Every node's submit file is checked at once, with its VARS as macros (the
way the engine expands it later), so that a DAG with a bad node is refused
before anything runs, all problems together.  The files the nodes name are
copied into the DAG's folder: the engine (`scheduling/dagman.py`) later
queues each node from there (`StagedFiles`), never from a user's folder.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from dctoolkit.jobs.intake import dag as language
from dctoolkit.jobs.intake.condor import join_arguments
from dctoolkit.jobs.intake.flags import append_to
from dctoolkit.jobs.intake.keys import KEYS, InputFile, canonical_key
from dctoolkit.jobs.intake.parse import MAX_PROBLEMS, SubmissionError, executable_problem, outside_link_message
from dctoolkit.jobs.intake.queue import (
    FileSource,
    FolderFiles,
    LinkOutError,
    Prepared,
    prepare,
    unrecorded_folders,
)
from dctoolkit.jobs.models import Dag, DagNode, JobState
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.operations.storage import check_quota


class DagSubmissionError(SubmissionError):
    """Problems in a DAG file and in its nodes' submit files, each told as `FILE:LINE: ...` of its own file."""

    def __init__(self, errors: Sequence[SubmissionError]) -> None:
        first = errors[0]
        super().__init__(first.source, first.line, first.message, first.problems[1:])
        self.parts = list(errors[:MAX_PROBLEMS])  # each file's own error (a form shows them one by one)
        self.text = "\n".join(str(e) for e in self.parts)

    def __str__(self) -> str:
        return self.text


def node_text(node: DagNode | language.Node, text: str, retry: int, source: str) -> str:
    """A node's submit text as the engine submits it: VARS as macros (and DAGMan's $(JOB), $(RETRY)),
    set just before the first queue statement as `condor_submit -a` sets them.  A macro the file never
    uses is left out (DAGMan passes it; HTCondor ignores it; our parser would call it an unknown key).
    Raises SubmissionError (at the node's JOB line of `source`, the DAG file) for a value that cannot be set."""
    name = node.name
    variables = [tuple(v) for v in node.variables]
    pairs = [("JOB", name), ("RETRY", str(retry)), *variables]
    used = text.lower()
    wanted = [
        (key, value, f"VARS {name} {key}") for key, value in pairs if f"$({key.lower()}" in used or _usable_key(key)
    ]
    if not re.search(r"^\s*name\s*=", text, re.IGNORECASE | re.MULTILINE):
        wanted.append(("name", name, f"JOB {name}"))  # its jobs are named after the node (`./dct jobs`)
    priority = node.priority
    if priority and _usable_key("priority"):
        wanted.append(("priority", str(priority), f"PRIORITY {name}"))
    try:
        return append_to(text, wanted).text
    except ValueError as exc:  # a value the submit language cannot hold (` #` would start a comment)
        raise SubmissionError(source, node.line, str(exc)) from None


def _usable_key(key: str) -> bool:
    canonical = canonical_key(key)
    return canonical is not None and KEYS[canonical].use != "refused"


def within(files: FileSource, directory: str) -> FileSource:
    """A node's files: its DIR inside the DAG's folder (uploads are matched by name wherever they are)."""
    if directory and isinstance(files, FolderFiles):
        return FolderFiles(files.folder / directory, files.listed)  # one record of the folders listed
    return files


class StagedFiles:
    """A node's files as copied into its DAG's folder at submission (`Dag.files`), seen from its DIR."""

    def __init__(self, folder: Path, files: Mapping[str, str], directory: str) -> None:
        self.folder, self.files, self.directory = folder, files, directory

    def key(self, source: str) -> str:
        return os.path.normpath(language.join_path(self.directory, os.path.expanduser(source)))

    def _path(self, ref: InputFile) -> Path:
        return self.folder / self.files[self.key(ref.source)]

    def describe(self, ref: InputFile) -> str:
        return ref.source

    def exists(self, ref: InputFile) -> bool:
        return self.key(ref.source) in self.files

    def head(self, ref: InputFile) -> bytes:
        with open(self._path(ref), "rb") as f:
            return f.read(2)

    def is_executable(self, ref: InputFile) -> bool:
        return os.access(self._path(ref), os.X_OK)

    def copy_to(self, ref: InputFile, dest: Path) -> None:
        shutil.copyfile(self._path(ref), dest)

    def read_text(self, path: str) -> str | None:
        stored = self.files.get(self.key(path))
        return (self.folder / stored).read_text(errors="replace") if stored else None

    def listdir(self, path: str) -> list[tuple[str, bool | None]] | None:
        """A `dir/` input's files as they were staged with the DAG (its copies are files; no folder is kept)."""
        folder = self.key(path.rstrip("/"))
        if folder in self.files:
            return None  # a file
        entries: list[tuple[str, bool | None]] = [
            (os.path.basename(k), False) for k in self.files if os.path.dirname(k) == folder and self.files[k]
        ]
        # `dir/` -> "": a folder staged with the DAG (`_stage`), so an empty one is a folder too.
        return entries if entries or f"{folder}/" in self.files else None

    def unrecorded(self, path: str) -> bool:
        """Whether Dag.files knows nothing of the folder `path`: no file, no `dir/`, nothing stored under it."""
        folder = self.key(path)
        return f"{folder}/" not in self.files and not any(
            key == folder or os.path.dirname(key) == folder for key in self.files
        )

    def with_folders(self, folders: Sequence[str]) -> StagedFiles:
        """These files, and each of `folders` (as the node names them) as the empty `dir/` it was."""
        return StagedFiles(self.folder, {**self.files, **{f"{self.key(f)}/": "" for f in folders}}, self.directory)

    def names(self) -> list[tuple[str, bool]]:
        here = os.path.normpath(self.directory or ".")
        return [
            (os.path.basename(k), False) for k, v in self.files.items() if v and (os.path.dirname(k) or ".") == here
        ]


def prepare_node(node: DagNode, files: StagedFiles, source: str) -> Prepared:
    """A node's submission at its current retry, from the DAG's stored files.  A DAG stored before its empty
    `dir/` inputs were kept in Dag.files gets each such folder its submission's check named ($(RETRY) 0)
    as the empty folder it was (`queue.unrecorded_folders`); raises SubmissionError."""
    text = node_text(node, node.submit_text, node.retries, source)
    try:
        return prepare(text, node.submit_name, files)
    except SubmissionError:
        checked = node_text(node, node.submit_text, 0, source)
        empty = unrecorded_folders(checked, node.submit_name, files, files.unrecorded, {})
        if not empty:
            raise
    return prepare(text, node.submit_name, files.with_folders(empty))


def script_submission(node: str, script: language.Script, words: Sequence[str], delay_seconds: int = 0) -> str:
    """The submission of a PRE or POST script: one small job running the script with its words."""
    lines = [f"executable = {script.executable}", f"name = {node}"]
    if words:
        lines.append(f"arguments = {join_arguments(list(words))}")
    if delay_seconds:
        lines.append(f"start_after = +{delay_seconds}s")
    return "\n".join([*lines, "request_memory = 64MB", "queue", ""])


@dataclass(frozen=True)
class PreparedDag:
    """A DAG that passed every check: its parse, each node's submit text and checked submission."""

    text: str
    source_name: str
    dag: language.Dag
    texts: Mapping[str, str]  # node name -> its submit file's text as written
    prepared: Mapping[str, Prepared]  # node name -> its submission checked (VARS applied, $(RETRY) 0)
    scripts: Sequence[tuple[str, InputFile]]  # (node DIR, the script program)
    files: FileSource


def prepare_dag(text: str, source_name: str, files: FileSource, env: dict[str, str] | None = None) -> PreparedDag:
    """Parse a DAG file and check every node; raises SubmissionError (DagSubmissionError) naming all problems."""
    parsed = language.parse_dag(text, source_name, exists=lambda path: files.read_text(path) is not None)
    errors: list[SubmissionError] = []
    texts: dict[str, str] = {}
    prepared: dict[str, Prepared] = {}
    scripts: list[tuple[str, InputFile]] = []
    for node in parsed.nodes:
        for script in (node.pre, node.post):
            if script is not None:
                ref = InputFile(script.executable, os.path.basename(script.executable), script.line)
                problem = _script_problem(within(files, node.directory), ref)
                if problem:
                    errors.append(SubmissionError(source_name, script.line, problem))
                scripts.append((node.directory, ref))
        if node.noop:
            continue
        own = files.read_text(node.submit_path()) or ""
        texts[node.name] = own
        try:
            prepared[node.name] = prepare(
                node_text(node, own, 0, source_name), node.submit_path(), within(files, node.directory), env
            )
        except SubmissionError as exc:
            errors.append(exc)
    if errors:
        raise DagSubmissionError(errors)
    return PreparedDag(text, source_name, parsed, texts, prepared, scripts, files)


def _script_problem(files: FileSource, ref: InputFile) -> str | None:
    if not files.exists(ref):
        return f"script '{ref.source}' not found — check the name (it is relative to the node's DIR)"
    problem = executable_problem(ref.name, files.head(ref), files.is_executable(ref))
    return f"script '{ref.source}': {problem}" if problem else None


def queue_dag(prepared: PreparedDag, owner: AbstractBaseUser) -> Dag:
    """Store a checked DAG: its row, its nodes' rows (waiting, or succeeded for DONE ones) and a copy of every
    file they need; the engine queues the nodes.  All or nothing."""
    parsed = prepared.dag
    check_quota(owner.pk, prepared.source_name)  # QuotaExceededError (a SubmissionError) over DCT_USER_QUOTA
    with transaction.atomic():
        # mypy: the project's user model is auth.User.
        row = Dag.objects.create(  # type: ignore[misc]
            owner=owner,
            source_name=prepared.source_name[:255],
            text=prepared.text,
            max_jobs=dict(parsed.max_jobs),
            email=_email_of(prepared),
        )
        folder = row.folder()
        try:
            row.files = _stage(prepared, folder)
            row.save(update_fields=["files"])
            DagNode.objects.bulk_create(
                [_node_row(row, node, prepared.texts.get(node.name, "")) for node in parsed.nodes]
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    wake_scheduler()
    return row


def _email_of(prepared: PreparedDag) -> str:
    for one in prepared.prepared.values():
        for job in one.submission.jobs:
            if job.email and job.notification != "never":
                return job.email
    return ""


def _stage(prepared: PreparedDag, folder: Path) -> dict[str, str]:
    """Copy each file the nodes name into `folder`/files, once each; returns path -> stored name (and each
    `dir/` input folder, as `dir/` -> "")."""
    stored: dict[str, str] = {}
    target = folder / "files"
    target.mkdir(parents=True, exist_ok=True)

    def stage(directory: str, ref: InputFile, files: FileSource, source: str) -> None:
        key = StagedFiles(folder, {}, directory).key(ref.source)
        if key in stored:
            return
        name = f"files/{len(stored)}"
        try:
            files.copy_to(ref, folder / name)
        except LinkOutError:
            raise SubmissionError(source, ref.line, outside_link_message(ref.source, ref.within)) from None
        if files.is_executable(ref):
            os.chmod(folder / name, 0o700)  # the server's own copy: it stays runnable
        stored[key] = name

    for node in prepared.dag.nodes:
        one = prepared.prepared.get(node.name)
        if one is None:
            continue
        node_files = within(prepared.files, node.directory)
        for ref in one.refs:
            stage(node.directory, ref, node_files, one.source_name)
        for named in {named for job in one.submission.jobs for named in job.input_folders}:
            stored[StagedFiles(folder, {}, node.directory).key(named) + "/"] = ""  # listed again as a folder
    for directory, ref in prepared.scripts:
        stage(directory, ref, within(prepared.files, directory), prepared.source_name)
    return stored


def _script_dict(script: language.Script | None) -> dict | None:
    if script is None:
        return None
    return {
        "executable": script.executable,
        "arguments": list(script.arguments),
        "line": script.line,
        "defer_status": script.defer_status,
        "defer_seconds": script.defer_seconds,
    }


def _node_row(dag: Dag, node: language.Node, text: str) -> DagNode:
    return DagNode(
        dag=dag,
        name=node.name,
        line=node.line,
        state=JobState.SUCCEEDED if node.done else JobState.WAITING,
        reason="DONE in the DAG file" if node.done else "",
        parents=list(node.parents),
        submit_name=node.submit_path()[:255],
        submit_text=text,
        directory=node.directory,
        variables=[list(v) for v in node.variables],
        max_retries=node.retries,
        unless_exit=node.unless_exit,
        priority=node.priority,
        category=node.category,
        is_final=node.is_final,
        noop=node.noop,
        pre=_script_dict(node.pre),
        post=_script_dict(node.post),
        pre_skip=node.pre_skip,
        abort_on=node.abort_on,
        abort_return=node.abort_return,
    )


def script_of(stored: dict | None) -> language.Script | None:
    """A node row's PRE or POST script, back as the parser gave it."""
    if not stored:
        return None
    return language.Script(
        stored["executable"],
        tuple(stored["arguments"]),
        stored["line"],
        defer_status=stored.get("defer_status"),
        defer_seconds=stored.get("defer_seconds") or 0,
    )
