"""Turns a submission file's text into job specs, or every problem it has, each located.

The language is HTCondor's submit description language (`condor.py`: its statements, macros
and queue forms), with dctoolkit's own keys beside HTCondor's (`keys.py`: what each key means
and how its value becomes job fields).  Here: the statements read in order, settings piling up
until each queue statement makes its jobs, and every problem collected with its line.

Pure: no ORM, no file system.  What the file names from outside (a `queue ... from` list, the
folder `queue ... matching` globs over, the submitter's environment) comes in as `SubmitFacts`,
and file checks (does `data.csv` exist, can the executable run) and node checks take their facts
as arguments, so the same rules serve the command line, the API and the portal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import PurePosixPath

from dctoolkit.jobs.intake import batch, condor
from dctoolkit.jobs.intake.keys import (
    ATTRIBUTE,
    DEPENDENCY_KEYS,
    KEYS,
    MAX_NAME_BYTES,
    OWN_KEYS,
    DependencyRef,
    InputFile,
    KeyProblemError,
    canonical_key,
    dependency_ref,
    env_and_args_message,
    job_fields,
    parse_int,
    strip_comment,
    unknown_key_message,
    written_as,
)
from dctoolkit.jobs.jobenv import env_and_args_bytes, job_env_problem
from dctoolkit.jobs.scheduling.classads import NodeAttrs, closest_miss, holds
from dctoolkit.jobs.scheduling.matching import ANY, AdAsk, GpuKind, Machine, Wants, lacking

__all__ = [
    "DEPENDENCY_KEYS",
    "KEYS",
    "MAX_NAME_BYTES",
    "MAX_PROBLEMS",
    "MAX_SUBMISSION_BYTES",
    "DependencyRef",
    "InputFile",
    "JobSpec",
    "NodeOffer",
    "Submission",
    "SubmissionError",
    "SubmitFacts",
    "canonical_key",
    "check_nodes",
    "env_and_args_message",
    "executable_problem",
    "outside_link_message",
    "parse_submission",
    "resolve_container",
    "submission_too_big_message",
]

DEFAULT_MEMORY_MB = 256
# The largest submission file (bytes, UTF-8): a page shows it whole, and it is
# parsed inside a web request.  Upload paths check it before reading.
MAX_SUBMISSION_BYTES = 1024 * 1024
# A file's problems reported at once: enough to fix a file in one round, few enough to read.
MAX_PROBLEMS = 20


class SubmissionError(ValueError):
    """A submission that cannot be queued: where (file, line) and what to do about it, for each problem.

    `line` and `message` are the first problem's; `problems` holds every one (at most MAX_PROBLEMS),
    and the text is one `FILE:LINE: message` line per problem.
    """

    def __init__(self, source: str, line: int, message: str, more: Sequence[tuple[int, str]] = ()) -> None:
        self.source = source
        self.line = line
        self.message = message
        self.problems: list[tuple[int, str]] = [(line, message), *more][:MAX_PROBLEMS]
        super().__init__("\n".join(f"{source}:{n}: {m}" for n, m in self.problems))

    @classmethod
    def of(cls, source: str, problems: Sequence[tuple[int, str]]) -> SubmissionError:
        unique = list(dict.fromkeys(problems))
        return cls(source, unique[0][0], unique[0][1], unique[1:])


@dataclass(frozen=True)
class JobSpec:
    """One job to queue; sizes in MB, times in seconds; stdin/stdout/stderr/log as HTCondor names them."""

    name: str
    executable: InputFile
    arguments: tuple[str, ...] = ()
    inputs: tuple[InputFile, ...] = ()
    # The `dir/` folders `inputs` came from, an empty one included: what a resubmit lists again.
    input_folders: tuple[str, ...] = ()
    email: str = ""
    node: str = ""
    request_cpus: int = 1
    request_memory_mb: int = DEFAULT_MEMORY_MB
    request_gpus: int = 0
    request_disk_mb: int | None = None
    max_runtime_seconds: float | None = None
    environment: dict[str, str] = field(default_factory=dict)
    output: tuple[str, ...] = ()  # transfer_output_files: what to bring back (empty: every new file)
    output_remaps: dict[str, str] = field(default_factory=dict)  # transfer_output_remaps: path -> path it comes back as
    network: str = ""
    container: str = ""
    process: int = 0
    stdin: str = ""  # the staged name fed to standard input ("": none)
    stdout: str = ""  # the name stdout comes back under, relative to the results folder ("": 'stdout')
    stderr: str = ""
    log: str = ""  # the submission's event log, relative to the results folder
    initialdir: str = ""
    chdir: str = ""  # an absolute initialdir: the granted host folder the job starts in ("": its own folder)
    attributes: dict[str, str] = field(default_factory=dict)  # +Attr / MY.Attr, the expression as written
    notification: str = ""  # never / complete / error / always ("": mail when `email` is given)
    hold: bool = False
    batch_name: str = ""
    dependencies: tuple[DependencyRef, ...] = ()  # after_ok / after_any / after_fail
    # Retries
    max_retries: int = 0
    success_exit_code: int = 0
    retry_until: int | None = None
    retry_delay_seconds: float | None = None
    # HTCondor's job policy expressions (on_exit_hold, periodic_release, ...), as written: jobs/jobpolicy.py
    policy: dict[str, str] = field(default_factory=dict)
    # Start times and throttles
    start_after: float | None = None  # Unix seconds: the job waits until then
    max_running: int | None = None  # at most this many jobs of the submission dispatched or running
    # Resources: node = a, b (any of them, when more than one), labels, avoid, the GPU kind
    nodes: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    gpu_type: str = ""
    gpu_memory_mb: int = 0
    gpu_capability: float = 0.0
    requirements: str = ""  # HTCondor's ClassAd expressions over a node's attributes (scheduling.classads)
    rank: str = ""
    priority: int = 0  # higher first among the owner's own queued jobs
    accounting_group: str = ""  # the group it charges ("": its owner's first, if any)

    @property
    def wants(self) -> Wants:
        """The machine choice the scheduler matches (stored as Job.placement)."""
        if not (
            self.nodes
            or self.labels
            or self.avoid
            or self.gpu_type
            or self.gpu_memory_mb
            or self.gpu_capability
            or self.requirements
            or self.rank
            or self.request_disk_mb
        ):
            return ANY
        return _wants(
            (self.labels, self.nodes, self.avoid),
            (self.gpu_type, self.gpu_memory_mb, self.gpu_capability),
            (self.requirements, self.rank, self.request_disk_mb or 0),
        )


@lru_cache(maxsize=1024)
def _wants(
    names: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    gpu: tuple[str, int, float],
    ads: tuple[str, str, int],
) -> Wants:
    # The jobs of a submission mostly ask the same: one Wants for all of them (a 100k queue checks fast).
    labels, nodes, avoid = names
    return Wants(frozenset(labels), frozenset(nodes), frozenset(avoid), *gpu, *ads)


@dataclass(frozen=True)
class Submission:
    """A parsed file: its jobs, and on which line each key was given (for later errors)."""

    source: str
    jobs: tuple[JobSpec, ...]
    lines: dict[str, int]
    read_files: tuple[InputFile, ...] = ()  # `queue ... from FILE` lists, which come with the submission
    uses_cluster: bool = False  # some value names $(Cluster): queue parses again with the real id
    dependencies: tuple[DependencyRef, ...] = ()  # every job of the submission waits on them
    script: str = ""  # a Slurm or PBS batch script: its name (the executable, staged from the submission's text)
    script_needs_shell: bool = False  # a script with no '#!' line: staged with '#!/bin/sh' first, as PBS runs it
    notes: tuple[tuple[int, str], ...] = ()  # (line, note) on what was accepted and not used

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.lines.get("executable", 1))


@dataclass(frozen=True)
class NodeOffer:
    """What one known node could ever give a job (not what is free now)."""

    name: str
    cpus: int
    memory_mb: int
    gpus: int
    containers: tuple[str, ...] = ()
    disk_free_mb: int = 0  # free scratch space it last reported (0: not known)
    labels: frozenset[str] = frozenset()
    gpu_kinds: Mapping[int, GpuKind] = field(default_factory=dict)  # index -> kind of each GPU
    arch: str = ""  # ClassAd Arch (X86_64)

    def ad(self) -> NodeAttrs:
        """The node as ClassAd requirements see it."""
        return NodeAttrs(
            self.name, self.cpus, self.memory_mb, self.disk_free_mb * 1024, self.gpus, self.arch, tuple(self.labels)
        )


@dataclass(frozen=True)
class SubmitFacts:
    """What a submission may read from outside: files beside it (by path as written, None when missing),
    the names in its folder (name, is_folder), the submitter's environment at submit time, and what a folder
    named as an input holds."""

    read_text: Callable[[str], str | None] = lambda path: None
    names: Callable[[], Sequence[tuple[str, bool]]] = lambda: ()
    env: Mapping[str, str] = field(default_factory=dict)
    # The entries (name, is_folder) of a folder an input names, by path as written; None: not a folder.
    # is_folder None: a link that leads out of the folder (never followed: `outside_link_message`).
    listdir: Callable[[str], Sequence[tuple[str, bool | None]] | None] = lambda path: None


NO_FACTS = SubmitFacts()


def parse_submission(
    text: str, source: str = "job.txt", max_queue: int = 100_000, facts: SubmitFacts = NO_FACTS, cluster: int = 0
) -> Submission:
    """Read a submission file.  Raises SubmissionError naming every problem (at most MAX_PROBLEMS).

    `cluster` is what `$(Cluster)` becomes (the submission's id, once known).
    """
    if len(text) > MAX_SUBMISSION_BYTES or len(text.encode()) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(source, 1, submission_too_big_message(len(text.encode())))
    dialect = batch.dialect_of(text)
    if dialect:
        return _parse_script(text, source, dialect, max_queue, facts, cluster)
    reader = _Reader(source, text, facts, cluster, max_queue)
    reader.run()
    dependencies = _one_dependency_set(reader.jobs, reader.problems)
    if reader.problems:
        raise SubmissionError.of(source, sorted(reader.problems, key=lambda p: p[0]))
    return Submission(
        source=source,
        jobs=tuple(reader.jobs),
        lines=reader.first_lines,
        read_files=tuple(reader.read_files),
        uses_cluster=bool(re.search(r"\$\(\s*cluster(id)?\s*[:)]", text, re.IGNORECASE)),
        dependencies=dependencies,
    )


def _one_dependency_set(jobs: Sequence[JobSpec], problems: list[tuple[int, str]]) -> tuple[DependencyRef, ...]:
    """The dependencies every job of the submission shares (the queue waits on them as one batch)."""
    if not jobs:
        return ()
    first = jobs[0].dependencies
    for job in jobs[1:]:
        if job.dependencies != first:
            line = (job.dependencies or first)[0].line
            problems.append(
                (line, "the after_* keys must be the same for every job of a submission; split it into two files")
            )
            break
    return first


def parse_dependency(kind: str, text: str, source: str, line: int) -> DependencyRef:
    """One after_* value (also what `submit --after-ok IDS` gives); SubmissionError naming a bad item."""
    try:
        return dependency_ref(kind, text, line)
    except KeyProblemError as problem:
        raise SubmissionError(source, problem.line, problem.message) from None


def _parse_script(text: str, source: str, dialect: str, max_queue: int, facts: SubmitFacts, cluster: int) -> Submission:
    """A Slurm or PBS batch script: its directives as a submission (batch.py), read by the one reader;
    every problem told on the script's own line."""
    translated = batch.translate(text, source, dialect)
    if translated.problems:
        raise SubmissionError.of(source, sorted(translated.problems, key=lambda p: p[0]))
    reader = _Reader(source, translated.text, facts, cluster, max_queue)
    reader.run()
    dependencies = _one_dependency_set(reader.jobs, reader.problems)
    if reader.problems:
        found = [(translated.lines.get(line, 1), message) for line, message in reader.problems]
        raise SubmissionError.of(source, sorted(found, key=lambda p: p[0]))
    return Submission(
        source=source,
        jobs=tuple(reader.jobs),
        lines={key: translated.lines.get(line, 1) for key, line in reader.first_lines.items()},
        uses_cluster="$(Cluster)" in translated.text,
        script=translated.script,
        script_needs_shell=translated.needs_shell,
        notes=translated.notes,
        # Told on the script's own line (`#SBATCH --dependency=...`) when a parent is refused later.
        dependencies=tuple(replace(d, line=translated.lines.get(d.line, 1)) for d in dependencies),
    )


def submission_too_big_message(size: int) -> str:
    """Why a submission file of `size` bytes is refused (the CLI, API and portal say the same)."""
    return (
        f"the submission file is {size:,} bytes; the limit is {MAX_SUBMISSION_BYTES:,} (1 MB); "
        "put long lists and big values in a data file the job reads"
    )


class _Settings:
    """The keys set so far, as a queue statement sees them: canonical key -> list of (value, line)."""

    def __init__(self) -> None:
        self.values: dict[str, list[tuple[str, int]]] = {}
        self.macros: dict[str, str] = {}  # every `NAME = value` by lower-case name (keys are macros too)
        self.attributes: dict[str, tuple[str, int]] = {}

    def copy(self) -> _Settings:
        other = _Settings()
        other.values = {k: list(v) for k, v in self.values.items()}
        other.macros = dict(self.macros)
        other.attributes = dict(self.attributes)
        return other


class _Reader:
    """One pass over the statements: settings accumulate; each queue statement makes its jobs."""

    def __init__(self, source: str, text: str, facts: SubmitFacts, cluster: int, max_queue: int) -> None:
        # A folder input of a 100k-job queue is listed once, not once a job.
        listdir = lru_cache(maxsize=4096)(facts.listdir)
        facts = replace(facts, listdir=listdir)
        self.source, self.text, self.facts, self.cluster, self.max_queue = source, text, facts, cluster, max_queue
        self.problems: list[tuple[int, str]] = []
        self.jobs: list[JobSpec] = []
        self.first_lines: dict[str, int] = {}
        self.read_files: list[InputFile] = []
        self.queues_without_executable: list[int] = []
        self.used_macros = {m.lower() for m in re.findall(r"\$\(\s*([A-Za-z_][A-Za-z0-9_.]*)", text)}

    def run(self) -> None:
        statements, self.problems = condor.read_statements(self.text)
        settings = _Settings()
        since_queue: dict[str, int] = {}
        old_queue: tuple[str, int] | None = None
        queued = False
        for statement in statements:
            if isinstance(statement, condor.QueueStatement):
                if old_queue:
                    self.problems.append(
                        (
                            statement.line,
                            f"'queue = N' (line {old_queue[1]}) and a queue statement "
                            "in one file; keep the queue statements",
                        )
                    )
                self._queue(statement, settings.copy())
                self.first_lines.setdefault("queue", statement.line)  # a refusal of the whole batch points here
                queued, since_queue = True, {}
                continue
            key = canonical_key(statement.key)
            if key == "queue":
                if queued:
                    self.problems.append((statement.line, "'queue = N' after a queue statement; write 'queue N'"))
                old_queue = (statement.value, statement.line)
                self.first_lines.setdefault("queue", statement.line)
                continue
            self._assign(statement, key, settings, since_queue)
        if not queued:
            count, line = "1", max(1, len(self.text.splitlines()))
            if old_queue is not None:
                line = old_queue[1]
                try:
                    count = str(parse_int(strip_comment(old_queue[0]), 0, self.max_queue, "queue", line))
                except KeyProblemError as problem:
                    self._add(problem.line, problem.message)
                    return
            self._queue(condor.QueueStatement(count, None, line), settings)
        if "executable" not in self.first_lines and not self.problems:
            # With other problems, one of them is likely the executable line (`executabel = ...`).
            last = max(1, self.text.count("\n") + (0 if self.text.endswith("\n") else 1))
            self._add(last, "no executable given; add a line such as 'executable = fit.py'")
            return
        if "executable" not in self.first_lines:
            return
        for line in self.queues_without_executable:
            self._add(line, "no executable given before this queue statement; add 'executable = ...' above it")

    def _add(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def _assign(
        self, statement: condor.Assignment, key: str | None, settings: _Settings, since: dict[str, int]
    ) -> None:
        raw, line = statement.key, statement.line
        value = strip_comment(statement.value).strip()
        attribute = ATTRIBUTE.match(raw)
        if attribute:
            settings.attributes[attribute.group(1)] = (value, line)
            settings.macros[f"my.{attribute.group(1).lower()}"] = value
            if attribute.group(1).lower() == "singularityimage" and value:
                # OSG's way to run a vanilla job in an image (often an unpacked one on /cvmfs): the job's
                # root filesystem, as container_image names it, rather than a label nobody reads.
                settings.values["container_image"] = [(value, line)]
                settings.values[written_as("container_image")] = [(raw, line)]  # its messages name this key
                self.first_lines.setdefault("container_image", line)
            return
        settings.macros[raw.lower()] = value
        if key in OWN_KEYS and raw.lower() in self.used_macros:
            return  # not an HTCondor command: a file that uses $(data) means its own macro, as in HTCondor
        if key is None:
            if raw.lower() not in self.used_macros:
                self._add(line, unknown_key_message(raw.lower()))
            return
        rule = KEYS[key]
        if rule.use == "refused":
            self._add(line, f"'{raw.lower()}' is refused: {rule.why}")
            return
        if not value:
            if key == "executable":
                self._add(line, f"'{raw.lower()}' has no value; write '{raw.lower()} = ...' or remove the line")
                return
            # HTCondor: an empty value unsets the key (`arguments =` in a template means none).
            settings.values.pop(key, None)
            since.pop(key, None)
            return
        if not rule.repeatable and key in since:
            self._add(line, f"'{raw.lower()}' is given twice (first on line {since[key]}); keep one of them")
            return
        since.setdefault(key, line)
        self.first_lines.setdefault(key, line)
        if rule.repeatable:
            settings.values.setdefault(key, []).append((value, line))
        else:
            settings.values[key] = [(value, line)]

    def _queue(self, statement: condor.QueueStatement, settings: _Settings) -> None:
        line = statement.line
        try:
            lookup = _lookup(settings, {})
            args = condor.expand(statement.args, lookup, self.facts.env)
            plan = condor.plan_queue(args, statement.inline, self._read_list(line), self.facts.names)
        except condor.LanguageError as exc:
            self._add(line, str(exc))
            self._probe(settings, line)
            return
        if plan.count * len(plan.rows) == 0:
            self._probe(settings, line)  # `queue 0` and empty lists queue nothing, but the settings are checked
        total = len(self.jobs) + plan.count * len(plan.rows)
        if total > self.max_queue:
            self._add(line, f"queue = {total} is out of range; use 0 to {self.max_queue}")
            return
        if "executable" not in settings.values:
            self.queues_without_executable.append(line)
        varying = bool(plan.names) or any(
            condor.has_macro(v) for vs in (*settings.values.values(), settings.attributes.values()) for v, *_ in vs
        )
        template: JobSpec | None = None
        for index, row in enumerate(plan.rows):
            for step in range(plan.count):
                process = len(self.jobs)
                if template is not None and not varying:
                    # Nothing depends on the job's number: expand once and copy, so that a big
                    # `queue N` costs one expansion, not N (a third of submit_10k's time).
                    self.jobs.append(_numbered(template, process))
                    continue
                builtins = {
                    "cluster": str(self.cluster),
                    "clusterid": str(self.cluster),
                    "process": str(process),
                    "procid": str(process),
                    "step": str(step),
                    "itemindex": str(plan.item_index(index)),
                    "row": str(plan.item_index(index)),
                }
                items = dict(zip(plan.names, row, strict=True))
                builtins.update({n.lower(): v for n, v in items.items()})
                template = self._build(settings, builtins, process, items, line)
                if template is None or len(self.problems) >= MAX_PROBLEMS:
                    return
                self.jobs.append(template)

    def _read_list(self, line: int) -> Callable[[str], str]:
        def read(path: str) -> str:
            text = self.facts.read_text(path)
            if text is None:
                raise condor.LanguageError(f"the item list '{path}' was not found beside the submission file")
            self.read_files.append(InputFile(source=path, name=PurePosixPath(path).name, line=line))
            return text

        return read

    def _probe(self, settings: _Settings, line: int) -> None:
        """Check the settings of a queue statement that makes no job (broken, or queueing nothing), so that
        their problems are reported with the statement's; macros nobody defines count as empty here."""
        if "executable" in settings.values:
            self._build(settings, {}, 0, {}, line, lenient=True)

    def _build(
        self,
        settings: _Settings,
        builtins: dict[str, str],
        process: int,
        items: dict[str, str],
        queue_line: int,
        lenient: bool = False,
    ) -> JobSpec | None:
        strict = _lookup(settings, builtins)
        lookup = (lambda name: strict(name) if strict(name) is not None else "") if lenient else strict
        values: dict[str, list[tuple[str, int]]] = {}
        # A queue variable named like a key sets that key (`queue input, arguments from (...)`), as in
        # HTCondor, where the queue statement expands to `input = A` + `queue`.
        keyed = {canonical_key(name): value for name, value in items.items()}
        settings = settings.copy() if any(k in KEYS for k in keyed if k) else settings
        for key, value in keyed.items():
            if key and KEYS[key].use == "job" and key != "queue":
                settings.values[key] = [(value, queue_line)]
        ok = True
        for key, entries in settings.values.items():
            expanded = []
            for value, line in entries:
                try:
                    expanded.append((condor.expand(value, lookup, self.facts.env), line))
                except condor.LanguageError as exc:
                    self._add(line, str(exc))
                    ok = False
            values[key] = expanded
        attributes = {}
        for name, (value, line) in settings.attributes.items():
            try:
                attributes[name] = condor.expand(value, lookup, self.facts.env)
            except condor.LanguageError as exc:
                self._add(line, str(exc))
                ok = False
        if not ok:
            return None
        return _job_from(values, attributes, process, self.facts, self.problems)


def _numbered(template: JobSpec, process: int) -> JobSpec:
    """`template` as job `process`: every other field the template's own object (what `replace` gives, without
    its checks and defaults run again per job of a big `queue N`; queue._add_jobs reuses such a job's row)."""
    job = object.__new__(JobSpec)  # what copy.copy does, in two steps of C
    job.__dict__.update(template.__dict__)
    object.__setattr__(job, "process", process)  # a frozen dataclass: set as its own __init__ does
    return job


def _lookup(settings: _Settings, builtins: Mapping[str, str]) -> Callable[[str], str | None]:
    def lookup(name: str) -> str | None:
        lower = name.lower()
        if lower in builtins:
            return builtins[lower]
        if lower == "item" and "item" not in settings.macros:
            return None
        return settings.macros.get(lower)

    return lookup


# --- one job from its expanded values ---------------------------------------------------------------


def _job_from(
    values: dict[str, list[tuple[str, int]]],
    attributes: dict[str, str],
    process: int,
    facts: SubmitFacts,
    problems: list[tuple[int, str]],
) -> JobSpec | None:
    fields, found = job_fields(values, facts.env)
    if not found and fields.get("inputs"):
        fields["input_folders"] = input_folders_of(fields["inputs"], facts.listdir)
        fields["inputs"], found = folder_inputs(fields["inputs"], fields.get("executable"), facts.listdir)
    problems.extend(found)
    if found or "executable" not in fields:
        return None
    name = fields.pop("name", "") or fields.get("batch_name") or PurePosixPath(fields["executable"].name).stem
    spec = JobSpec(name=name[:200], process=process, attributes=attributes, **fields)
    # The words as the node counts them (macros filled in): the node refuses what the parser let
    # through, so both use jobenv's one rule.
    if job_env_problem(spec.environment, spec.arguments):
        size = env_and_args_bytes(spec.environment, spec.arguments)
        key = "environment" if "environment" in values else "arguments"
        line = (values.get(key) or values.get("executable") or [("", 1)])[-1][1]
        problems.append((line, env_and_args_message(size)))
        return None
    return spec


def folder_inputs(
    inputs: tuple[InputFile, ...],
    executable: InputFile | None,
    listdir: Callable[[str], Sequence[tuple[str, bool | None]] | None],
) -> tuple[tuple[InputFile, ...], list[tuple[int, str]]]:
    """transfer_input_files naming a folder, as HTCondor means it: `dir/` stages the files it holds (each in
    the job's folder by its name); `dir` (the folder itself, copied as a folder by HTCondor) is refused with
    the reason, as is a sub-folder of `dir/`: inputs land in the job's folder by file name here."""
    out: list[InputFile] = []
    problems: list[tuple[int, str]] = []
    for ref in inputs:
        folder = ref.source.rstrip("/")
        entries = listdir(folder)
        if entries is None:
            out.append(InputFile(folder, ref.name, ref.line) if ref.source.endswith("/") else ref)
            continue
        if not ref.source.endswith("/"):
            problems.append(
                (
                    ref.line,
                    f"'{folder}' is a folder; HTCondor would copy it whole, and here every input lands in the "
                    f"job's folder by its file name: write '{folder}/' to stage the files it holds (the job reads "
                    "them without the folder's name), or pack it (tar) and unpack it in the job",
                )
            )
            continue
        outside = sorted(name for name, is_folder in entries if is_folder is None)
        if outside:
            problems.append((ref.line, outside_link_message(f"{folder}/{outside[0]}", folder)))
            continue
        inner = sorted(name for name, is_folder in entries if is_folder)
        if inner:
            problems.append(
                (
                    ref.line,
                    f"'{folder}/' holds the folder '{inner[0]}'; only the files directly in a folder are staged "
                    "here (each in the job's folder by its name): name the files, or pack the folder (tar)",
                )
            )
            continue
        out.extend(InputFile(f"{folder}/{name}", name, ref.line, within=folder) for name, _ in sorted(entries))
    # A folder's files did not pass keys.py's check of staged names: the same check, over every input.
    seen = {executable.name: executable.line} if executable else {}
    for ref in out:
        if ref.name in seen:
            problems.append(
                (
                    ref.line,
                    f"two files would be staged as '{ref.name}' (also on line {seen[ref.name]}); rename one of "
                    "them, every input lands in the job's folder by its file name",
                )
            )
            break
        seen[ref.name] = ref.line
    return tuple(out), problems


def input_folders_of(
    inputs: tuple[InputFile, ...], listdir: Callable[[str], Sequence[tuple[str, bool | None]] | None]
) -> tuple[str, ...]:
    """The `dir/` inputs of `inputs` that are folders, without the slash (`listdir` is cached by the parse)."""
    named = {ref.source.rstrip("/") for ref in inputs if ref.source.endswith("/")}
    return tuple(sorted(folder for folder in named if listdir(folder) is not None))


def outside_link_message(path: str, folder: str) -> str:
    """Why a link in a `dir/` input that leads out of the folder is refused (at submit, or found at copy time)."""
    return (
        f"'{path}' is a link to outside '{folder}/'; a folder's files are staged only when they are in it: copy the "
        "file into the folder, or name it on its own in transfer_input_files"
    )


# --- checks that need facts from outside -----------------------------------


def executable_problem(name: str, head: bytes, mode_executable: bool) -> str | None:
    """None when `name` can run (a .py file, a shebang, or a run bit), else why not."""
    if name.endswith(".py") or head.startswith(b"#!") or mode_executable:
        return None
    return (
        f"'{name}' cannot be run: it is not a .py file, has no '#!' line and no run bit; "
        "add a shebang such as '#!/bin/sh' as its first line, or run 'chmod +x' on it"
    )


def resolve_container(name: str, offered: Iterable[str]) -> str | None:
    """The offered root filesystem `name` means: itself when offered, else the one whose folder is called `name`."""
    offered = list(offered)
    if name in offered:
        return name
    matches = [path for path in offered if PurePosixPath(path).name == name]
    return matches[0] if len(matches) == 1 else None


def _check_machine_choice(submission: Submission, offers: list[NodeOffer]) -> list[NodeOffer]:
    """The nodes the first job's node, labels and GPU kind allow; refuses a job no node could ever take."""
    machines = [Machine(o.name, o.labels, o.gpu_kinds or {i: GpuKind() for i in range(o.gpus)}) for o in offers]
    seen: set[tuple[Wants, int]] = set()
    for job in submission.jobs:
        wants = job.wants
        if job.node and wants is not ANY:
            wants = replace(wants, nodes=frozenset({job.node}))  # `node = n1`: one node, kept in JobSpec.node
        if wants is ANY or (wants, job.request_gpus) in seen:
            continue
        seen.add((wants, job.request_gpus))
        lack = lacking(wants, job.request_gpus, machines)
        if lack:
            key = next((k for k in _BLAMED[lack.what] if k in submission.lines), "executable")
            raise SubmissionError(submission.source, submission.line_of(key), f"{key}: {lack.message}")
    first = submission.jobs[0]
    return [o for o in offers if (not first.node or o.name == first.node) and first.wants.node_ok(o.name, o.labels)]


def _check_requirements(submission: Submission, candidates: list[NodeOffer]) -> list[NodeOffer]:
    """The candidates the first job's ClassAd requirements hold on; refuses a job whose requirements hold on none
    of the nodes its machine choice allows, naming the closest node and the clause it fails."""
    ads = [o.ad() for o in candidates]
    seen: set[tuple[str, int, int, int, int]] = set()
    for job in submission.jobs:
        if not job.requirements:
            continue
        sizes = (job.request_cpus, job.request_memory_mb, job.request_disk_mb or 0, job.request_gpus)
        if (job.requirements, *sizes) in seen:
            continue
        seen.add((job.requirements, *sizes))
        miss = closest_miss(job.requirements, ads, AdAsk(job.requirements, "", *sizes))
        if miss:
            raise SubmissionError(
                submission.source, submission.line_of("requirements"), f"requirements: {miss.message()}"
            )
    first = submission.jobs[0]
    if not first.requirements:
        return candidates
    sizes = (first.request_cpus, first.request_memory_mb, first.request_disk_mb or 0, first.request_gpus)
    ask = AdAsk(first.requirements, "", *sizes)
    return [o for o, ad in zip(candidates, ads, strict=True) if holds(first.requirements, ad, ask)]


# The line a refusal of each kind (matching.Lack.what) points at: the first of these keys given.
_BLAMED = {
    "node": ("node", "avoid"),
    "labels": ("labels",),
    "gpus": (
        "gpu_type",
        "gpu_memory",
        "require_gpus",
        "gpus_minimum_capability",
        "gpus_minimum_memory",
        "request_gpus",
    ),
}


def check_nodes(submission: Submission, offers: Iterable[NodeOffer]) -> None:
    """Refuse requests that no known node could ever satisfy.  With no nodes known, accept."""
    offers = list(offers)
    if not offers or not submission.jobs:
        return
    by_name = {o.name: o for o in offers}
    job = submission.jobs[0]
    source = submission.source
    if job.node and job.node not in by_name:
        raise SubmissionError(
            source,
            submission.line_of("node"),
            f"unknown node '{job.node}'; known nodes are: {', '.join(sorted(by_name))}",
        )
    candidates = _check_requirements(submission, _check_machine_choice(submission, offers))
    for key, attr, unit in (
        ("request_cpus", "cpus", " cpus"),
        ("request_memory", "memory_mb", " MB"),
        ("request_gpus", "gpus", " GPUs"),
    ):
        asked = getattr(job, "request_memory_mb" if attr == "memory_mb" else key)
        best = max(getattr(o, attr) for o in candidates)
        if asked > best:
            where = f"node {job.node}" if job.node else "the largest node"
            raise SubmissionError(
                source,
                submission.line_of(key),
                f"{key} asks for {asked}{unit} but {where} has {best}{unit}; ask for at most {best}{unit}",
            )
    disk = max(o.disk_free_mb for o in candidates)
    if job.request_disk_mb and disk and job.request_disk_mb > disk:
        # Free space, not a size: it changes, so this is checked when it can never fit now, as HTCondor's
        # matchmaking would leave the job idle.
        where = f"node {job.node} has {disk} MB of" if job.node else f"the node with the most has {disk} MB of"
        raise SubmissionError(
            source,
            submission.line_of("request_disk"),
            f"request_disk asks for {job.request_disk_mb} MB but {where} free scratch space; ask for at most {disk} MB",
        )
    offered = sorted({c for o in candidates for c in o.containers})
    if job.container and resolve_container(job.container, offered) is None:
        listing = ", ".join(offered) if offered else "none (nodes offer containers with DCT_CONTAINERS)"
        key = "container_image" if "container_image" in submission.lines else "container"
        raise SubmissionError(
            source,
            submission.line_of(key),
            f"no node offers container '{job.container}'; containers offered: {listing}",
        )
