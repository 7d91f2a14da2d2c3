"""Turns a submission file's text into job specs, or one located error.

Pure: no ORM, no file system.  File checks (does `data.csv` exist, is the
executable runnable) and node checks take their facts as arguments, so the
same rules serve the command line, the API and the portal.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from .jobenv import MAX_ENV_AND_ARGS_BYTES, env_and_args_bytes, env_name_problem, job_env_problem
from .units import MAX_RUNTIME_SECONDS, UnitError, parse_duration, parse_size_mb
from .words import QuotingError, split_words

DEFAULT_MEMORY_MB = 256
# The largest submission file (bytes, UTF-8): a page shows it whole, and it is
# parsed inside a web request.  Upload paths check it before reading.
MAX_SUBMISSION_BYTES = 1024 * 1024
# The longest file name (bytes, UTF-8) most file systems take.
MAX_NAME_BYTES = 255

KEYS = (
    "executable",
    "data",
    "input",
    "email",
    "client",
    "node",
    "arguments",
    "request_cpus",
    "request_memory",
    "request_gpus",
    "max_runtime",
    "environment",
    "output",
    "queue",
    "network",
    "container",
    "name",
)
_REPEATABLE = {"data", "input"}
_ALIASES = {"input": "data", "client": "node"}
_MACRO = re.compile(r"\$\((\w+)\)")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
# Digits of `client = N`: node-N for a node number, not a 5,000-digit one.
_NODE_NUMBER = re.compile(r"^[0-9]{1,9}$")


class SubmissionError(ValueError):
    """A submission that cannot be queued: where (file, line) and what to do about it."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line
        self.message = message


@dataclass(frozen=True)
class InputFile:
    """A file named by the submission: `source` as written, staged as `name`."""

    source: str
    name: str
    line: int


@dataclass(frozen=True)
class JobSpec:
    """One job to queue; sizes in MB, times in seconds."""

    name: str
    executable: InputFile
    arguments: tuple[str, ...] = ()
    inputs: tuple[InputFile, ...] = ()
    email: str = ""
    node: str = ""
    request_cpus: int = 1
    request_memory_mb: int = DEFAULT_MEMORY_MB
    request_gpus: int = 0
    max_runtime_seconds: float | None = None
    environment: dict[str, str] = field(default_factory=dict)
    output: tuple[str, ...] = ()
    network: str = ""
    container: str = ""
    process: int = 0


@dataclass(frozen=True)
class Submission:
    """A parsed file: its jobs, and on which line each key was given (for later errors)."""

    source: str
    jobs: tuple[JobSpec, ...]
    lines: dict[str, int]

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


def parse_submission(text: str, source: str = "job.txt", max_queue: int = 100_000) -> Submission:
    """Read a submission file.  Raises SubmissionError(source, line, message)."""
    if len(text) > MAX_SUBMISSION_BYTES or len(text.encode()) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(source, 1, submission_too_big_message(len(text.encode())))
    values, lines = _read_lines(text, source)

    def fail(key: str, message: str) -> SubmissionError:
        return SubmissionError(source, lines[key], message)

    if "executable" not in values:
        last = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        raise SubmissionError(source, last, "no executable given; add a line such as 'executable = fit.py'")
    count = _parse_int(values.get("queue", "1"), 1, max_queue, "queue", lambda m: fail("queue", m))
    _check_env_and_args_size(values, fail)
    template = _template(values, fail)
    texts = [("arguments", values.get("arguments", "")), ("output", values.get("output", ""))]
    texts += [("data", value) for value, _ in values.get("data", [])]
    for key, value in texts:
        for name in _MACRO.findall(value):
            if name.lower() != "process":
                raise fail(key, f"unknown macro '$({name})'; the only macro is $(Process), the job's number 0..N-1")
    if any(_MACRO.search(value) for _, value in texts) or _MACRO.search(template.get("name") or ""):
        jobs = tuple(_expand(template, values, lines, source, process) for process in range(count))
    else:
        # Nothing depends on $(Process): expand once and copy, so that a big
        # `queue = N` costs one expansion, not N (a third of submit_10k's time).
        first = _expand(template, values, lines, source, 0)
        jobs = (first, *(replace(first, process=process) for process in range(1, count)))
    return Submission(source=source, jobs=jobs, lines=lines)


def submission_too_big_message(size: int) -> str:
    """Why a submission file of `size` bytes is refused (the CLI, API and portal say the same)."""
    return (
        f"the submission file is {size:,} bytes; the limit is {MAX_SUBMISSION_BYTES:,} (1 MB); "
        "put long lists and big values in a data file the job reads"
    )


def _check_env_and_args_size(values: dict[str, Any], fail: Callable[[str, str], SubmissionError]) -> None:
    # Measured on the text as written, before any splitting, so that a huge
    # value costs nothing to refuse; the words are measured again after.
    size = sum(len(values.get(key, "").encode()) for key in ("environment", "arguments"))
    if size > MAX_ENV_AND_ARGS_BYTES:
        raise fail("environment" if "environment" in values else "arguments", env_and_args_message(size))


def env_and_args_message(size: int) -> str:
    return (
        f"environment and arguments take {size:,} bytes; the limit is {MAX_ENV_AND_ARGS_BYTES:,} (64 KB) together; "
        "pass big inputs as a data file"
    )


def _read_lines(text: str, source: str) -> tuple[dict[str, Any], dict[str, int]]:
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            hint = " (HTCondor's 'queue' line is written 'queue = N' here)" if line.lower().startswith("queue") else ""
            raise SubmissionError(source, number, f"expected 'key = value', got '{line[:60]}'{hint}")
        key, _, value = line.partition("=")
        key = key.strip().lower()
        value = _strip_comment(value).strip()
        if key not in KEYS:
            raise SubmissionError(source, number, _unknown_key_message(key))
        canonical = _ALIASES.get(key, key)
        if canonical in _REPEATABLE:
            values.setdefault(canonical, []).append((value, number))
            lines.setdefault(canonical, number)
            continue
        if canonical in lines:
            raise SubmissionError(
                source, number, f"'{key}' is given twice (first on line {lines[canonical]}); keep one of them"
            )
        if not value:
            raise SubmissionError(source, number, f"'{key}' has no value; write '{key} = ...' or remove the line")
        values[canonical] = value
        lines[canonical] = number
    return values, lines


def _strip_comment(value: str) -> str:
    # '#' starts a comment unless it sits inside quotes.
    quote = None
    for i, ch in enumerate(value):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or value[i - 1].isspace()):
            return value[:i]
    return value


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}' — did you mean '{close[0]}'?"
    return f"unknown key '{key}'; known keys are: {', '.join(KEYS)}"


def _parse_int(text: str, low: int, high: int, key: str, fail: Callable[[str], Exception]) -> int:
    text = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        if re.fullmatch(r"[+-]?[0-9]+", text):
            raise fail(f"{key} has {len(text):,} digits, which is out of range; use {low} to {high}")
        raise fail(f"{key} must be a whole number, got '{_shown(text)}'")
    value = int(text)
    if not low <= value <= high:
        raise fail(f"{key} = {value} is out of range; use {low} to {high}")
    return value


def _shown(text: str, limit: int = 40) -> str:
    """`text` as a message quotes it: cut short when long."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _template(values: dict[str, Any], fail: Callable[[str, str], SubmissionError]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    spec["request_cpus"] = _parse_int(
        values.get("request_cpus", "1"), 1, 1024, "request_cpus", lambda m: fail("request_cpus", m)
    )
    spec["request_gpus"] = _parse_int(
        values.get("request_gpus", "0"), 0, 64, "request_gpus", lambda m: fail("request_gpus", m)
    )
    if "request_memory" in values:
        try:
            spec["request_memory_mb"] = parse_size_mb(values["request_memory"])
        except UnitError as exc:
            raise fail("request_memory", str(exc)) from None
    if "max_runtime" in values:
        try:
            spec["max_runtime_seconds"] = parse_duration(values["max_runtime"], MAX_RUNTIME_SECONDS)
        except UnitError as exc:
            raise fail("max_runtime", str(exc)) from None
    if "email" in values:
        email = _unquote(values["email"])
        if not _EMAIL.match(email):
            raise fail("email", f"'{email}' is not an email address; write it like email = me@lab.org")
        spec["email"] = email
    if "node" in values:
        spec["node"] = _node_name(_unquote(values["node"]), lambda m: fail("node", m))
    if "environment" in values:
        spec["environment"] = _environment(_unquote(values["environment"]), lambda m: fail("environment", m))
    if "network" in values:
        network = _unquote(values["network"]).lower()
        if network not in ("none", "host", "private"):
            raise fail(
                "network",
                f"network = {network} is not known; use 'none' (no network), 'private' (outbound only) or 'host'",
            )
        spec["network"] = network
    if "container" in values:
        container = _unquote(values["container"])
        if not container.startswith("/"):
            raise fail("container", f"container = {container}: give the absolute path of a root filesystem folder")
        spec["container"] = container.rstrip("/") or "/"
    if "name" in values:
        spec["name"] = _unquote(values["name"])[:200]
    return spec


def _node_name(value: str, fail: Callable[[str], Exception]) -> str:
    # ASCII digits only: '²'.isdigit() is true, but int('²') fails.
    if _NODE_NUMBER.match(value):
        return f"node-{int(value)}"
    if not _NODE_NAME.match(value):
        raise fail(f"'{_shown(value)}' is not a node name; write client = 2 (for node-2) or node = NAME")
    return value


def _environment(value: str, fail: Callable[[str], Exception]) -> dict[str, str]:
    try:
        words = split_words(value)
    except QuotingError as exc:
        raise fail(f"cannot read the environment ({exc}); write it like environment = \"A=1 B='two words'\"") from None
    env: dict[str, str] = {}
    for word in words:
        name, eq, val = word.partition("=")
        if not eq or not name:
            raise fail(f"'{_shown(word)}' is not NAME=value; write it like environment = \"A=1 B=two\"")
        problem = env_name_problem(name)
        if problem:
            raise fail(problem)
        env[name] = val
    return env


def _file_ref(text: str, line: int, source: str, what: str) -> InputFile:
    path = PurePosixPath(text)
    name = path.name
    if not name or name in (".", ".."):
        raise SubmissionError(source, line, f"'{text}' is not a file name; name the {what} file, such as data.csv")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise SubmissionError(
            source,
            line,
            f"the {what} file name '{_shown(name)}' is {len(name.encode()):,} bytes; "
            f"the limit is {MAX_NAME_BYTES} bytes; rename the file",
        )
    return InputFile(source=text, name=name, line=line)


def _expand(
    template: dict[str, Any], values: dict[str, Any], lines: dict[str, int], source: str, process: int
) -> JobSpec:
    def sub(text: str) -> str:
        return _MACRO.sub(lambda m: str(process), text)

    executable = _file_ref(_unquote(values["executable"]), lines["executable"], source, "executable")
    inputs: list[InputFile] = []
    seen = {executable.name: executable.line}
    for value, line in values.get("data", []):
        for raw in sub(value).split(","):
            part = _unquote(raw.strip())
            if not part:
                continue
            ref = _file_ref(part, line, source, "data")
            if ref.name in seen:
                raise SubmissionError(
                    source,
                    line,
                    f"two files would be staged as '{ref.name}' (also on line {seen[ref.name]}); "
                    "rename one of them, every input lands in the job's folder by its file name",
                )
            seen[ref.name] = line
            inputs.append(ref)
    arguments: tuple[str, ...] = ()
    if "arguments" in values:
        try:
            arguments = tuple(split_words(sub(values["arguments"])))
        except QuotingError as exc:
            raise SubmissionError(
                source, lines["arguments"], f"cannot read the arguments ({exc}); close every quote"
            ) from None
    output: tuple[str, ...] = ()
    if "output" in values:
        output = tuple(_output_path(sub(p.strip()), lines["output"], source) for p in values["output"].split(","))
        output = tuple(p for p in output if p)
    name = template.get("name") or PurePosixPath(executable.name).stem
    name = sub(name)
    spec = JobSpec(
        name=name,
        executable=executable,
        arguments=arguments,
        inputs=tuple(inputs),
        output=output,
        process=process,
    )
    fields = {k: v for k, v in template.items() if k != "name"}
    spec = replace(spec, **fields)
    # The words as the node counts them ($(Process) filled in): the node refuses
    # what the parser let through, so both use jobenv's one rule.
    if job_env_problem(spec.environment, spec.arguments):
        size = env_and_args_bytes(spec.environment, spec.arguments)
        key = "environment" if "environment" in lines else "arguments"
        raise SubmissionError(source, lines.get(key, lines["executable"]), env_and_args_message(size))
    return spec


def _output_path(text: str, line: int, source: str) -> str:
    text = _unquote(text)
    if not text:
        return ""
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts:
        raise SubmissionError(
            source, line, f"output '{text}' must be a path inside the job's folder, such as results/ or out.csv"
        )
    return str(path)


# --- checks that need facts from outside -----------------------------------


def executable_problem(name: str, head: bytes, mode_executable: bool) -> str | None:
    """None when `name` can run (a .py file, a shebang, or a run bit), else why not."""
    if name.endswith(".py") or head.startswith(b"#!") or mode_executable:
        return None
    return (
        f"'{name}' cannot be run: it is not a .py file, has no '#!' line and no run bit; "
        "add a shebang such as '#!/bin/sh' as its first line, or run 'chmod +x' on it"
    )


def check_nodes(submission: Submission, offers: Iterable[NodeOffer]) -> None:
    """Refuse requests that no known node could ever satisfy.  With no nodes known, accept."""
    offers = list(offers)
    if not offers:
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
    candidates = [by_name[job.node]] if job.node else offers
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
    if job.container and not any(job.container in o.containers for o in candidates):
        offered = sorted({c for o in candidates for c in o.containers})
        listing = ", ".join(offered) if offered else "none (nodes offer containers with DCT_CONTAINERS)"
        raise SubmissionError(
            source,
            submission.line_of("container"),
            f"no node offers container '{job.container}'; containers offered: {listing}",
        )
