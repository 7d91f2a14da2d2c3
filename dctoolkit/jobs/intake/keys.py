"""What each key of a submission file means here, and how its value becomes fields of a job.

`KEYS` is the table: read into the job ("job"), accepted and ignored ("ignored"), or refused with the
reason ("refused").  `job_fields` turns one job's expanded values into JobSpec fields, one builder a
concern (`_BUILDERS`); a new key is one table entry and, when it is read, one builder.

Pure: no ORM, no file system.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from dctoolkit.jobs import jobpolicy
from dctoolkit.jobs.intake import condor
from dctoolkit.jobs.intake.advice import suggest_key
from dctoolkit.jobs.jobenv import MAX_ENV_AND_ARGS_BYTES, env_name_problem
from dctoolkit.jobs.scheduling.classads import ExpressionError, check_expression
from dctoolkit.jobs.scheduling.matching import LabelError, split_names
from dctoolkit.lib.units import MAX_RUNTIME_SECONDS, UnitError, parse_duration, parse_size_mb

# The longest file name (bytes, UTF-8) most file systems take.
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class Key:
    """What a key means here: `use` is "job" (read into the job), "ignored" (accepted, harmless) or
    "refused" (with `why`).  `repeatable` keys add up instead of being given once."""

    use: str
    why: str = ""
    repeatable: bool = False


_LATER = "dctoolkit does not support it yet; remove the line"

# Resources (the contract's section): which machines a job may use, and which GPUs.  dctoolkit's own
# are `labels`, `avoid`, `gpu_type`, `gpu_memory` (and `node`, above); the rest are HTCondor's.
RESOURCE_OWN_KEYS = ("labels", "avoid", "gpu_type", "gpu_memory")
RESOURCE_KEYS = (
    *RESOURCE_OWN_KEYS,
    *("require_gpus", "gpus_minimum_capability", "gpus_minimum_memory", "requirements", "rank"),
)

# Every key, by its canonical name (lower case).  Spellings: case and underscores do not matter
# (`RequestCpus`), and `_ALIASES` maps other names onto these.
KEYS: dict[str, Key] = {
    # dctoolkit's own (the first part of the contract)
    "executable": Key("job"),
    "data": Key("job", repeatable=True),
    "email": Key("job"),
    "node": Key("job"),
    "arguments": Key("job"),
    "request_cpus": Key("job"),
    "request_memory": Key("job"),
    "request_gpus": Key("job"),
    "max_runtime": Key("job"),
    "environment": Key("job"),
    "transfer_output_files": Key("job"),
    "transfer_output_remaps": Key("job"),
    "queue": Key("job"),
    "network": Key("job"),
    "container": Key("job"),
    "name": Key("job"),
    # HTCondor's, with HTCondor's meaning
    "universe": Key("job"),
    "container_image": Key("job"),
    "input": Key("job"),
    "output": Key("job"),
    "error": Key("job"),
    "log": Key("job"),
    "initialdir": Key("job"),
    "getenv": Key("job"),
    "notification": Key("job"),
    "notify_user": Key("job"),
    "hold": Key("job"),
    "request_disk": Key("job"),
    "batch_name": Key("job"),
    "priority": Key("job"),  # Resources: higher first among the owner's own jobs (`_priority`)
    "accounting_group": Key("job"),  # Resources: the group the job charges (`_accounting_group`)
    # Pipelines (the contract's second part): dependencies and retries
    "after_ok": Key("job"),
    "after_any": Key("job"),
    "after_fail": Key("job"),
    "max_retries": Key("job"),
    "success_exit_code": Key("job"),
    "retry_until": Key("job"),
    "retry_delay": Key("job"),
    # Pipelines: start times and throttles (`_start_time`, `_throttle`)
    "start_after": Key("job"),
    "deferral_time": Key("job"),
    "max_running": Key("job"),
    "max_idle": Key("job"),
    "max_materialize": Key("job"),
    # Job policy: HTCondor's expressions, evaluated when a run ends and by the housekeeping (`_policy`)
    **{name: Key("job") for name in jobpolicy.POLICY_KEYS},
    "should_transfer_files": Key("ignored"),
    "when_to_transfer_output": Key("ignored"),
    "transfer_executable": Key("ignored"),
    "stream_output": Key("ignored"),
    "stream_error": Key("ignored"),
    "log_xml": Key("ignored"),
    "description": Key("ignored"),
    "submit_event_notes": Key("ignored"),
    "leave_in_queue": Key("ignored"),
    "image_size": Key("ignored"),
    "coresize": Key("ignored"),
    "nice_user": Key("ignored"),
    "job_lease_duration": Key("ignored"),
    "want_graceful_removal": Key("ignored"),
    "job_max_vacate_time": Key("ignored"),
    "encrypt_input_files": Key("ignored"),
    "encrypt_output_files": Key("ignored"),
    "load_profile": Key("ignored"),
    # The job attribute batch_name sets; teaching files write it as a command, which condor_submit takes
    # as a plain macro (the batch name stays unset): accepted, and ignored as there.
    "jobbatchname": Key("ignored"),
    # HTCondor's, refused with the reason
    "docker_image": Key(
        "refused",
        "a Docker image would have to be pulled; use universe = container with container_image = NAME "
        "of a root filesystem a node offers (./dct nodes lists them)",
    ),
    "x509userproxy": Key("refused", "grid proxy credentials are not used here; remove the line"),
    "use_x509userproxy": Key("refused", "grid proxy credentials are not used here; remove the line"),
    "use_oauth_services": Key("refused", "OAuth credentials are not used here; remove the line"),
    "output_destination": Key("refused", "outputs come back with './dct results'; " + _LATER),
    "preserve_relative_paths": Key("refused", _LATER),
    "concurrency_limits": Key("refused", _LATER),
    "kill_sig": Key("refused", _LATER),
    "max_transfer_input_mb": Key("refused", _LATER),
    "max_transfer_output_mb": Key("refused", _LATER),
    # Resources: machine choice and GPU kinds (`_machine_choice`, `_gpu_kind`)
    **{name: Key("job") for name in RESOURCE_KEYS},
    # HTCondor's, given meaning by other parts of the contract (Pipelines, Resources): known, so that no
    # did-you-mean points elsewhere, and refused until they are built.
    **{name: Key("refused", _LATER) for name in ("accounting_group_user",)},
}
# dctoolkit's own keys that are no HTCondor command: in an HTCondor file they are plain macros, so a
# file that uses one as `$(data)` keeps HTCondor's meaning (the line only defines the macro).
OWN_KEYS = frozenset(
    (
        *("data", "email", "node", "max_runtime", "network", "container", "name"),
        *("after_ok", "after_any", "after_fail", "retry_delay", "start_after", "max_running"),  # Pipelines'
        *RESOURCE_OWN_KEYS,
    )
)
_ALIASES = {
    "transfer_input_files": "data",
    "client": "node",
    "iwd": "initialdir",
    "args": "arguments",
    "env": "environment",
    "request_memory_mb": "request_memory",
}
_BY_SPELLING = {name.replace("_", ""): name for name in (*KEYS, *_ALIASES)}
_UNIVERSES_REFUSED = ("standard", "scheduler", "local", "grid", "java", "vm", "parallel", "docker")
# An input named by URL (http://, stash://, osdf://, file://): HTCondor fetches it with a plugin.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
# Digits of `client = N`: node-N for a node number, not a 5,000-digit one.
_NODE_NUMBER = re.compile(r"^[0-9]{1,9}$")
ATTRIBUTE = re.compile(r"^(?:\+|my\.)([A-Za-z_][A-Za-z0-9_]*)$", re.IGNORECASE)
# Never copied by `getenv`: the server's secrets (the contract's list).
# Besides the contract's list: every DCT_* and FLOWER_* setting (LDAP and OIDC secrets, the metrics
# token, Flower's password), which configure the server and mean nothing to a job.
_GETENV_NEVER = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DCT_TOKEN", "EMAIL_*", "DCT_*", "FLOWER_*")


@dataclass(frozen=True)
class InputFile:
    """A file named by the submission: `source` as written, staged as `name`; `within`: for a file of a
    `dir/` input, that folder (the file is copied only while it really lies in it: no link out is followed)."""

    source: str
    name: str
    line: int
    within: str = ""


def canonical_key(key: str) -> str | None:
    """The table's name for a key as written (`RequestCpus`, `request_cpus`, `Transfer_Input_Files`), or None."""
    name = _BY_SPELLING.get(key.lower().replace("_", ""))
    return _ALIASES.get(name, name) if name else None


# --- reading the statements in order ---------------------------------------------------------------


class KeyProblemError(Exception):
    """A value that cannot be read (at `line`); `more`: further (line, message) problems the same builder found."""

    def __init__(self, line: int, message: str, more: tuple[tuple[int, str], ...] = ()) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.more = more


@dataclass
class _Job:
    """The expanded values of one job, and the fields built from them so far."""

    values: dict[str, list[tuple[str, int]]]
    env: Mapping[str, str]
    fields: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> tuple[str, int] | None:
        entries = self.values.get(key)
        return entries[-1] if entries else None

    def line(self, key: str) -> int:
        found = self.get(key)
        return found[1] if found else self.line("executable") if key != "executable" else 1

    def key_as_written(self, key: str) -> str:
        """`key`, or the other key the user set it with on its line (`+SingularityImage` for container_image)."""
        found, other = self.get(key), self.get(written_as(key))
        return other[0] if found and other and other[1] == found[1] else key


def written_as(key: str) -> str:
    """Where a job's values keep the key as written of a key set under another name; no key has a blank."""
    return f"{key} written as"


def job_fields(
    values: dict[str, list[tuple[str, int]]], env: Mapping[str, str]
) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """JobSpec fields from one job's expanded values (canonical key -> [(value, line)]), and the problems
    (line, message) found; `env` is the submitter's environment (for getenv)."""
    job = _Job(values, env)
    problems: list[tuple[int, str]] = []
    for builder in _BUILDERS:
        try:
            job.fields.update(builder(job))
        except KeyProblemError as problem:
            problems.append((problem.line, problem.message))
            problems.extend(problem.more)
    return job.fields, problems


def _executable(job: _Job) -> dict[str, Any]:
    found = job.get("executable")
    if not found:
        return {}
    value, line = found
    return {"executable": _file_ref(_unquote(value), line, "executable")}


def _universe(job: _Job) -> dict[str, Any]:
    found = job.get("universe")
    image = job.get("container_image")
    if found:
        universe, line = _unquote(found[0]).lower(), found[1]
        if universe in _UNIVERSES_REFUSED:
            hint = (
                "use universe = container with container_image = NAME of a root filesystem a node offers"
                if universe == "docker"
                else "use universe = vanilla (the default), or universe = container"
            )
            raise KeyProblemError(line, f"universe = {universe} is not supported here; {hint}")
        if universe not in ("vanilla", "container"):
            raise KeyProblemError(
                line, f"universe = {universe} is not a universe; use vanilla (the default) or container"
            )
        if universe == "container" and not image:
            raise KeyProblemError(
                line, "universe = container needs container_image = NAME (a root filesystem a node offers)"
            )
    if image:
        path = _unquote(image[0])
        if "://" in path or path.endswith(_IMAGE_FILES):
            raise KeyProblemError(image[1], image_refusal(path, job.key_as_written("container_image")))
        if "container" in job.values:
            written = job.key_as_written("container_image")
            raise KeyProblemError(image[1], f"{written} and container both given; keep one of them")
        return {"container": path.rstrip("/") or "/"}
    return {}


# Image files a container runtime would have to unpack (Apptainer/Singularity's, a docker save archive).
_IMAGE_FILES = (".sif", ".simg", ".img", ".tar", ".tar.gz", ".tgz")


def image_refusal(path: str, key: str = "container_image") -> str:
    """Why `key = path` (container_image or +SingularityImage: a URL or an image file) is refused, and what to
    write instead."""
    if path.lower().startswith("docker://"):
        why = "a Docker image would have to be pulled, and nodes pull nothing"
    elif "://" in path:
        why = "an image named by URL would have to be fetched, and nodes fetch nothing"
    elif path.endswith((".sif", ".simg", ".img")):
        why = "an Apptainer/Singularity image file would need Apptainer on the node, which runs jobs in bubblewrap"
    else:
        why = "an image archive would have to be unpacked on every run"
    return (
        f"{key} = {shown(path, 60)}: {why}; unpack the image once into a folder on the nodes (for a .sif: "
        "apptainer build --sandbox /containers/NAME IMAGE.sif), offer it with DCT_CONTAINERS=/containers/NAME, "
        "and write container_image = NAME (./dct nodes lists what nodes offer)"
    )


def _requests(job: _Job) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, low, high in (("request_cpus", 1, 1024), ("request_gpus", 0, 64)):
        found = job.get(key)
        if found:
            fields[key] = parse_int(found[0], low, high, key, found[1])
    memory = job.get("request_memory")
    if memory:
        fields["request_memory_mb"] = _memory_mb(memory[0], memory[1])
    disk = job.get("request_disk")
    if disk:
        fields["request_disk_mb"] = _disk_mb(disk[0], disk[1])
    runtime = job.get("max_runtime")
    if runtime:
        try:
            fields["max_runtime_seconds"] = parse_duration(runtime[0], MAX_RUNTIME_SECONDS)
        except UnitError as exc:
            raise KeyProblemError(runtime[1], str(exc)) from None
    return fields


def _memory_mb(value: str, line: int) -> int:
    """request_memory: dctoolkit's sizes, also as HTCondor files write them with a blank (`1 GB`)."""
    try:
        return parse_size_mb(value)
    except UnitError as exc:
        try:
            return parse_size_mb(value.replace(" ", ""))
        except UnitError:
            raise KeyProblemError(line, str(exc)) from None


def _disk_mb(value: str, line: int) -> int:
    """HTCondor's request_disk: a bare number is KiB (unlike request_memory's MB); units K, M, G, T."""
    text = value.strip().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return max(1, -(-int(float(text)) // 1024))
    try:
        return parse_size_mb(text)
    except UnitError:
        raise KeyProblemError(
            line, f"'{shown(value)}' is not a disk size; write it like 2GB, 500MB or 1048576 (KiB)"
        ) from None


def _mail(job: _Job) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "email" in job.values and "notify_user" in job.values:
        raise KeyProblemError(job.line("notify_user"), "email and notify_user both given; keep one of them")
    found = job.get("email") or job.get("notify_user")
    if found:
        email = _unquote(found[0])
        if not _EMAIL.match(email):
            raise KeyProblemError(found[1], f"'{email}' is not an email address; write it like email = me@lab.org")
        fields["email"] = email
    notification = job.get("notification")
    if notification:
        word = _unquote(notification[0]).lower()
        if word not in ("never", "complete", "error", "always"):
            raise KeyProblemError(
                notification[1], f"notification = {word} is not known; use Never, Complete, Error or Always"
            )
        fields["notification"] = word
        if word == "never":
            fields["email"] = ""
    return fields


def _placement(job: _Job) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    node = job.get("node")
    if node:
        # `node = n1, n2` (any of them) is Resources'; one name pins the job, as before.
        parts = [part.strip() for part in _unquote(node[0]).split(",") if part.strip()]
        names = tuple(dict.fromkeys(_node_name(part, node[1]) for part in parts))
        if len(names) == 1:
            fields["node"] = names[0]
        elif names:
            fields["nodes"] = names
    network = job.get("network")
    if network:
        word = _unquote(network[0]).lower()
        if word not in ("none", "host", "private"):
            raise KeyProblemError(
                network[1],
                f"network = {word} is not known; use 'none' (no network), 'private' (outbound only) or 'host'",
            )
        fields["network"] = word
    container = job.get("container")
    if container:
        path = _unquote(container[0])
        if not path.startswith("/"):
            raise KeyProblemError(
                container[1], f"container = {path}: give the absolute path of a root filesystem folder"
            )
        fields["container"] = path.rstrip("/") or "/"
    return fields


# --- Resources: machine choice and GPU kinds -------------------------------------------------------


def _machine_choice(job: _Job) -> dict[str, Any]:
    """labels = a, b (all must hold), avoid = n3 (never these nodes); node = a, b is `_placement`'s."""
    fields: dict[str, Any] = {}
    for key, what in (("labels", "label"), ("avoid", "node name")):
        found = job.get(key)
        if not found:
            continue
        try:
            names = _split_names(_unquote(found[0]), what)
        except LabelError as exc:
            raise KeyProblemError(found[1], f"{key} = {shown(found[0])}: {exc}") from None
        fields[key] = tuple(_node_name(name, found[1]) for name in names) if key == "avoid" else names
    return fields


@lru_cache(maxsize=1024)
def _split_names(text: str, what: str) -> tuple[str, ...]:
    # Every job of a big queue has the same value: read once.
    return tuple(split_names(text, what))


# require_gpus clauses this reads (HTCondor's GPU attributes): `Capability >= 8.0`, `GlobalMemoryMb >= 40000`,
# `DeviceName == "..."`, joined by &&.  Anything else needs ClassAd requirements (not evaluated yet).
_GPU_CLAUSE = re.compile(
    r"^\s*(capability|globalmemorymb|devicename)\s*(>=|>|==|=\?=)\s*(\"[^\"]*\"|[0-9.]+)\s*$", re.IGNORECASE
)


def _gpu_kind(job: _Job) -> dict[str, Any]:
    """gpu_type, gpu_memory and HTCondor's require_gpus / gpus_minimum_*: which GPUs a job takes."""
    fields: dict[str, Any] = {}
    found = job.get("gpu_type")
    if found:
        name = _unquote(found[0]).strip()
        if not name or len(name) > 100:
            raise KeyProblemError(found[1], "gpu_type names a GPU, such as gpu_type = A100 (part of its name)")
        fields["gpu_type"] = name
    for key in ("gpu_memory", "gpus_minimum_memory"):
        found = job.get(key)
        if found:
            # HTCondor's gpus_minimum_memory is MB, as a bare number of gpu_memory is.
            fields["gpu_memory_mb"] = _memory_mb(_unquote(found[0]), found[1])
    found = job.get("gpus_minimum_capability")
    if found:
        fields["gpu_capability"] = _capability(found[0], found[1], "gpus_minimum_capability")
    found = job.get("require_gpus")
    if found:
        fields.update(_require_gpus(found[0], found[1]))
    if fields and "request_gpus" not in job.values:
        fields["request_gpus"] = 1  # asking for a kind of GPU asks for one, as Slurm's --gres=gpu:a100 does
    elif fields and job.fields.get("request_gpus") == 0:
        key = next(
            k
            for k in ("gpu_type", "gpu_memory", "gpus_minimum_memory", "gpus_minimum_capability", "require_gpus")
            if k in job.values
        )
        raise KeyProblemError(job.line(key), f"{key} chooses a kind of GPU, but request_gpus = 0; ask for 1 or more")
    return fields


def _requirements(job: _Job) -> dict[str, Any]:
    """HTCondor's requirements: a ClassAd expression over a node's attributes, read (evaluated at check_nodes)."""
    return _classad(job, "requirements")


def _priority(job: _Job) -> dict[str, Any]:
    """HTCondor's priority: an integer, higher first among the submitter's own jobs (default 0)."""
    found = job.get("priority")
    if not found:
        return {}
    return {"priority": parse_int(_unquote(found[0]), -MAX_PRIORITY, MAX_PRIORITY, "priority", found[1])}


MAX_PRIORITY = 1_000_000


def _accounting_group(job: _Job) -> dict[str, Any]:
    """HTCondor's accounting_group (Slurm --account, PBS -A): the group the job charges, by name (whether it
    exists and the submitter is in it is asked at submit: `queue.check_group`)."""
    found = job.get("accounting_group")
    if not found:
        return {}
    name = _unquote(found[0]).strip()
    if not GROUP_NAME.fullmatch(name):
        raise KeyProblemError(
            found[1],
            f"accounting_group = {shown(found[0])}: a group name is letters, digits, '_', '.' and '-' "
            "(./dct group lists the groups)",
        )
    return {"accounting_group": name}


# An accounting group's name: what `./dct group add` accepts (accounts.group_changes) and this key reads.
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _rank(job: _Job) -> dict[str, Any]:
    return _classad(job, "rank")


def _classad(job: _Job, key: str) -> dict[str, Any]:
    found = job.get(key)
    if not found or not found[0].strip():
        return {}
    try:
        check_expression(found[0].strip(), key)
    except ExpressionError as exc:
        raise KeyProblemError(found[1], str(exc)) from None
    return {key: found[0].strip()}


def _capability(text: str, line: int, key: str) -> float:
    try:
        value = float(_unquote(text).strip())
    except ValueError:
        value = -1.0
    if not 0 < value < 100:
        raise KeyProblemError(line, f"{key} = {shown(text)}: write a CUDA compute capability, such as 8.0")
    return value


def _unbracket(clause: str) -> str:
    """HTCondor's examples bracket each clause: (Capability >= 8.0) && (GlobalMemoryMb >= 16000)."""
    clause = clause.strip()
    while clause.startswith("(") and clause.endswith(")") and "(" not in clause[1:-1] and ")" not in clause[1:-1]:
        clause = clause[1:-1].strip()
    return clause


def _require_gpus(text: str, line: int) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for written in _unquote(text).split("&&"):
        clause = _unbracket(written)
        match = _GPU_CLAUSE.match(clause)
        if not match:
            raise KeyProblemError(
                line,
                f"require_gpus: cannot read '{shown(clause.strip())}'; write clauses like Capability >= 8.0, "
                'GlobalMemoryMb >= 40000 or DeviceName == "NVIDIA A100", joined by &&',
            )
        attr, op, value = match.group(1).lower(), match.group(2), match.group(3)
        quoted = value.startswith('"')
        if attr == "devicename" and quoted and op in ("==", "=?="):
            fields["gpu_type"] = value[1:-1]
        elif attr == "capability" and not quoted and op == ">=":
            fields["gpu_capability"] = _capability(value, line, "require_gpus Capability")
        elif attr == "globalmemorymb" and not quoted and op in (">=", ">"):
            # Whole megabytes: `> 8000` is `>= 8001`.
            least = parse_int(value, 0 if op == ">" else 1, 10**9, "require_gpus GlobalMemoryMb", line)
            fields["gpu_memory_mb"] = least + (op == ">")
        else:
            raise KeyProblemError(
                line,
                f"require_gpus: '{shown(clause.strip())}': use >= with a number for {match.group(1)}"
                if not quoted
                else f"require_gpus: '{shown(clause.strip())}': use == with a quoted name",
            )
    return fields


def _naming(job: _Job) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    name = job.get("name")
    if name:
        fields["name"] = _unquote(name[0])[:200]
    batch = job.get("batch_name")
    if batch:
        fields["batch_name"] = _unquote(batch[0])[:200]
    hold = job.get("hold")
    if hold:
        flag = condor.parse_bool(hold[0])
        if flag is None:
            raise KeyProblemError(hold[1], f"hold = {shown(hold[0])}: write hold = true or hold = false")
        fields["hold"] = flag
    return fields


def _arguments(job: _Job) -> dict[str, Any]:
    found = job.get("arguments")
    if not found:
        return {}
    try:
        return {"arguments": tuple(condor.split_arguments(found[0]))}
    except condor.LanguageError as exc:
        raise KeyProblemError(found[1], f"cannot read the arguments: {exc}") from None


def _environment(job: _Job) -> dict[str, Any]:
    env: dict[str, str] = {}
    found = job.get("environment")
    size = len(found[0].encode()) if found else 0
    arguments = job.get("arguments")
    size += len(arguments[0].encode()) if arguments else 0
    if size > MAX_ENV_AND_ARGS_BYTES:
        # Measured on the text as written, before any splitting, so that a huge value costs nothing
        # to refuse; the words are measured again after.
        raise KeyProblemError(job.line("environment" if found else "arguments"), env_and_args_message(size))
    getenv = job.get("getenv")
    if getenv:
        env.update(_getenv(getenv[0], getenv[1], job.env))
    if found:
        try:
            entries = condor.split_environment(found[0])
        except condor.LanguageError as exc:
            raise KeyProblemError(found[1], f"cannot read the environment: {exc}") from None
        for entry in entries:
            name, eq, value = entry.partition("=")
            if not eq or not name:
                raise KeyProblemError(
                    found[1], f"'{shown(entry)}' is not NAME=value; write it like environment = \"A=1 B=two\""
                )
            problem = env_name_problem(name)
            if problem:
                raise KeyProblemError(found[1], problem)
            env[name] = value
    return {"environment": env} if env else {}


def _getenv(value: str, line: int, submitter: Mapping[str, str]) -> dict[str, str]:
    """`getenv = true` (all), `false`, or `PATTERN, ...` (HTCondor 10: globs; `!PATTERN` leaves out)."""
    flag = condor.parse_bool(value)
    if flag is False:
        return {}
    patterns = ["*"] if flag else [p for p in re.split(r"[\s,]+", value) if p]
    keep = [p for p in patterns if not p.startswith("!")]
    drop = [p[1:] for p in patterns if p.startswith("!")] + list(_GETENV_NEVER)
    return {
        name: val
        for name, val in submitter.items()
        if any(fnmatch.fnmatchcase(name, p) for p in keep)
        and not any(fnmatch.fnmatchcase(name, p) for p in drop)
        and env_name_problem(name) is None
    }


def _initialdir(job: _Job) -> dict[str, Any]:
    """A relative `initialdir`: where the job's files are found and come back (HTCondor's); an absolute one: a
    host folder granted to the submitter that the job starts in (`chdir`; checked against the grants at submit)."""
    found = job.get("initialdir")
    if not found:
        return {}
    folder = _unquote(found[0]).rstrip("/") or "/"
    path = PurePosixPath(folder)
    if ".." in path.parts:
        raise KeyProblemError(
            found[1],
            f"initialdir = {folder}: '..' is not allowed; give a folder below the submission file's folder, "
            "such as run$(Process), or the absolute path of a folder granted to you",
        )
    if path.is_absolute():
        return {"chdir": str(path)}
    return {"initialdir": "" if str(path) == "." else str(path)}


def _in_initialdir(job: _Job, name: str) -> str:
    folder = job.fields.get("initialdir", "")
    return name if not folder or name.startswith("/") else posixpath.join(folder, name)


def _inputs(job: _Job) -> dict[str, Any]:
    executable = job.fields.get("executable")
    # Every staged name, with the file it comes from: the executable's first (an input of the same path
    # is that file again; of another path, a clash).
    seen: dict[str, tuple[str, int]] = {}
    inputs: list[InputFile] = []
    entries = [(part, line) for value, line in job.values.get("data", []) for part in value.split(",")]
    stdin = job.get("input")
    fields: dict[str, Any] = {}
    if stdin:
        name = _unquote(stdin[0].strip())
        if name != "/dev/null":
            entries.append((name, stdin[1]))
            fields["stdin"] = PurePosixPath(name).name
    if executable:
        seen[executable.name] = (posixpath.normpath(executable.source), executable.line)
    for raw, line in entries:
        written = _unquote(raw.strip())
        part = written.rstrip("/")
        if not part:
            continue
        if _URL.match(part):
            raise KeyProblemError(
                line,
                f"{shown(part)}: inputs are not downloaded here (HTCondor's file transfer plugins); "
                "fetch the file beside the submission file and name it instead",
            )
        ref = _file_ref(_in_initialdir(job, part), line, "data")
        if written.endswith("/"):
            # HTCondor's `dir/`: the folder's files, not the folder (parse.py lists it from the facts).
            ref = InputFile(source=ref.source + "/", name=ref.name, line=line)
        if ref.name in seen:
            if seen[ref.name][0] == posixpath.normpath(ref.source):
                # The same file named twice (input and transfer_input_files, or the executable listed
                # among the inputs, as HTCondor allows): staged once.
                continue
            raise KeyProblemError(
                line,
                f"two files would be staged as '{ref.name}' (also on line {seen[ref.name][1]}); "
                "rename one of them, every input lands in the job's folder by its file name",
            )
        seen[ref.name] = (posixpath.normpath(ref.source), line)
        inputs.append(ref)
    return {**fields, "inputs": tuple(inputs)} if inputs or fields else {}


def _streams(job: _Job) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("output", "error", "log"):
        found = job.get(key)
        if not found:
            continue
        name = _unquote(found[0].strip())
        if name == "/dev/null":
            continue
        fields["stdout" if key == "output" else "stderr" if key == "error" else key] = _result_path(
            _in_initialdir(job, name), found[1], key
        )
    # `output` and `error` may name one file, as in HTCondor: `results` puts both streams in it.
    return fields


def _transfer_output(job: _Job) -> dict[str, Any]:
    found = job.get("transfer_output_files")
    if not found:
        return {}
    paths = []
    for part in found[0].split(","):
        text = _unquote(part.strip())
        if text:
            paths.append(_output_path(text, found[1]))
    return {"output": tuple(paths)}


def _remaps(job: _Job) -> dict[str, Any]:
    """HTCondor's transfer_output_remaps: output `a` comes back as `b` (below the results folder); a remap
    of the `output` or `error` name renames the stdout or stderr file.  Every bad remap is a problem."""
    found = job.get("transfer_output_remaps")
    if not found:
        return {}
    value, line = found
    try:
        pairs = condor.split_remaps(value)
    except condor.LanguageError as exc:
        raise KeyProblemError(line, f"transfer_output_remaps: {exc}") from None
    streams = {
        _unquote(given[0].strip()): ("stdout" if key == "output" else "stderr")
        for key in ("output", "error")
        if (given := job.get(key))
    }
    fields: dict[str, Any] = {}
    remaps: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    for source, target in pairs:
        try:
            dest = _remap_target(source, target, line)
            if source in streams:
                fields[streams[source]] = _in_initialdir(job, dest)
            elif dest in remaps.values():
                raise KeyProblemError(line, f"transfer_output_remaps: two outputs would come back as '{dest}'")
            else:
                remaps[_remap_source(source, line)] = dest
        except KeyProblemError as problem:
            problems.append((problem.line, problem.message))
    raise_all(problems)
    return {**fields, "output_remaps": remaps} if remaps else fields


def _remap_source(source: str, line: int) -> str:
    path = PurePosixPath(source)
    if source.endswith("/"):
        raise KeyProblemError(
            line,
            f"transfer_output_remaps: '{shown(source)}' is a folder; folders are not remapped (as in HTCondor): "
            "remap each file, or have the job write the folder under the name you want",
        )
    if _leaves_folder(path):
        raise KeyProblemError(
            line,
            f"transfer_output_remaps: '{shown(source)}' names no file of the job's folder; name it as the job "
            "writes it there, such as out.csv",
        )
    return str(path)


def _remap_target(source: str, target: str, line: int) -> str:
    path = PurePosixPath(target)
    if _leaves_folder(path) or "://" in target:
        raise KeyProblemError(
            line,
            f"transfer_output_remaps: '{shown(source)} = {shown(target)}' would put the file outside the job's "
            f"results folder; give a path inside it, such as results/{PurePosixPath(source).name}",
        )
    return str(path)


# --- Dependencies: after_ok / after_any / after_fail ------------------------------------------------
# Which jobs exist and whose they are is checked by intake/depends.py, which has the database.

DEPENDENCY_KEYS = ("after_ok", "after_any", "after_fail")
_DEPENDENCY_ITEM = re.compile(r"^(?:(?P<low>[0-9]{1,18})(?:-(?P<high>[0-9]{1,18}))?|batch:(?P<batch>[0-9]{1,18}))$")
# Parent ids one submission may name (a range of a million is a typing mistake).
MAX_DEPENDENCY_IDS = 100_000


@dataclass(frozen=True)
class DependencyRef:
    """One dependency key as written: the parent ids (ranges expanded) and whole submissions it names."""

    kind: str  # after_ok | after_any | after_fail
    ids: tuple[int, ...]
    batches: tuple[int, ...]
    line: int


def dependency_ref(kind: str, text: str, line: int) -> DependencyRef:
    """One after_* value: ids (12), ranges (12-20) and batch:S, separated by commas or spaces."""
    ids: list[int] = []
    batches: list[int] = []
    items = [item for item in re.split(r"[\s,]+", _unquote(text.strip())) if item]
    if not items:
        raise KeyProblemError(line, f"{kind} names no job; write {kind} = 12, 14-20 or {kind} = batch:7")
    for item in items:
        match = _DEPENDENCY_ITEM.match(item.lower())
        if not match:
            raise KeyProblemError(
                line, f"{kind}: '{shown(item)}' is not a job id, a range (12-20) or batch:S (a submission)"
            )
        if match["batch"]:
            batches.append(int(match["batch"]))
            continue
        low, high = int(match["low"]), int(match["high"] or match["low"])
        if high < low:
            raise KeyProblemError(line, f"{kind}: the range {item} ends before it starts; write {high}-{low}")
        if len(ids) + high - low + 1 > MAX_DEPENDENCY_IDS:
            raise KeyProblemError(
                line, f"{kind} names more than {MAX_DEPENDENCY_IDS:,} jobs; name their batch (batch:S) instead"
            )
        ids.extend(range(low, high + 1))
    return DependencyRef(kind, tuple(dict.fromkeys(ids)), tuple(dict.fromkeys(batches)), line)


def _dependencies(job: _Job) -> dict[str, Any]:
    refs = []
    for kind in DEPENDENCY_KEYS:
        found = job.get(kind)
        if found:
            refs.append(dependency_ref(kind, found[0], found[1]))
    return {"dependencies": tuple(refs)} if refs else {}


# --- Retries: max_retries, success_exit_code, retry_until, retry_delay -------------------------------

MAX_RETRIES = 100
_RETRY_UNTIL = re.compile(r"^(?:exitcode\s*(?:==|=\?=)\s*)?([+-]?[0-9]{1,3})$", re.IGNORECASE)


def _retries(job: _Job) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if found := job.get("max_retries"):
        spec["max_retries"] = parse_int(found[0], 0, MAX_RETRIES, "max_retries", found[1])
    if found := job.get("success_exit_code"):
        spec["success_exit_code"] = parse_int(found[0], 0, 255, "success_exit_code", found[1])
    if found := job.get("retry_until"):
        match = _RETRY_UNTIL.match(_unquote(found[0]).strip())
        if not match or not 0 <= int(match[1]) <= 255:
            raise KeyProblemError(
                found[1],
                f"retry_until = {shown(found[0])}: give an exit code (0 to 255), or write it as ExitCode == N",
            )
        spec["retry_until"] = int(match[1])
    if found := job.get("retry_delay"):
        try:
            spec["retry_delay_seconds"] = parse_duration(found[0], MAX_RUNTIME_SECONDS)
        except UnitError as exc:
            raise KeyProblemError(found[1], str(exc)) from None
    return spec


# --- Start times and throttles: start_after, deferral_time, max_running (max_idle, max_materialize) ---

# The most jobs a throttle may let run at once, and the latest start time (a year ahead).
MAX_THROTTLE = 100_000
MAX_START_AHEAD_SECONDS = 366 * 86400
_RELATIVE = re.compile(r"^(?:now)?\+(.+)$", re.IGNORECASE)
_CURRENT_TIME = re.compile(r"^\(?\s*currenttime\s*\+\s*([0-9]{1,12})\s*\)?$", re.IGNORECASE)


def start_time(text: str, now: float) -> float:
    """`2026-12-01T22:00` (the server's local time unless it has an offset), `+30m` or `now+1h` (from `now`)
    -> Unix seconds; ValueError with the message when unreadable or not in the future."""
    value = _unquote(text.strip())
    relative = _RELATIVE.match(value)
    if relative:
        try:
            when = now + parse_duration(relative[1], MAX_START_AHEAD_SECONDS)
        except UnitError as exc:
            raise ValueError(f"start_after = {shown(value)}: {exc}") from None
    else:
        try:
            moment = datetime.fromisoformat(value.replace(" ", "T", 1))
        except ValueError:
            raise ValueError(
                f"start_after = {shown(value)} is not a time; write start_after = 2026-12-01T22:00 "
                "(the server's local time, or with an offset such as +01:00) or start_after = +30m"
            ) from None
        when = moment.astimezone().timestamp()  # naive: the server's local time
    return _future(when, now, f"start_after = {shown(value)}")


def _future(when: float, now: float, what: str) -> float:
    if when <= now:
        shown_now = datetime.fromtimestamp(now).astimezone().strftime("%Y-%m-%d %H:%M")
        raise ValueError(f"{what} is in the past (it is {shown_now} now); give a later time, or +30m")
    if when - now > MAX_START_AHEAD_SECONDS:
        raise ValueError(f"{what} is more than a year ahead; give a nearer time")
    return when


def _start_time(job: _Job) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    now = time.time()
    if (found := job.get("start_after")) and (other := job.get("deferral_time")):
        raise KeyProblemError(
            other[1], f"deferral_time and start_after (line {found[1]}) both give the start time; keep one"
        )
    if found:
        try:
            fields["start_after"] = start_time(found[0], now)
        except ValueError as exc:
            raise KeyProblemError(found[1], str(exc)) from None
    elif found := job.get("deferral_time"):
        # HTCondor's: Unix seconds, or the usual (CurrentTime + N).
        text = _unquote(found[0].strip())
        later = _CURRENT_TIME.match(text)
        if not later and not re.fullmatch(r"[0-9]{1,12}", text):
            raise KeyProblemError(
                found[1],
                f"deferral_time = {shown(text)}: give Unix seconds (date +%s) or (CurrentTime + 600); "
                "start_after = 2026-12-01T22:00 or +30m says it more plainly",
            )
        when = now + int(later[1]) if later else float(text)
        try:
            fields["start_after"] = _future(when, now - 1, f"deferral_time = {shown(text)}")
        except ValueError as exc:
            raise KeyProblemError(found[1], str(exc)) from None
    return fields


def _throttle(job: _Job) -> dict[str, Any]:
    # HTCondor's max_materialize and max_idle both bound the jobs of the submission in play at once here.
    fields: dict[str, Any] = {}
    for key in ("max_running", "max_materialize", "max_idle"):
        if found := job.get(key):
            fields["max_running"] = parse_int(_unquote(found[0]), 1, MAX_THROTTLE, key, found[1])
            break
    return fields


# --- Job policy: on_exit_hold, on_exit_remove, periodic_hold / _release / _remove, hold reasons ------


def _policy(job: _Job) -> dict[str, Any]:
    """HTCondor's policy expressions, as written (jobs/jobpolicy.py evaluates them); every one that classad2
    cannot read is a problem at its line."""
    policy: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    for key in jobpolicy.POLICY_KEYS:
        found = job.get(key)
        if not found or not found[0].strip():
            continue
        text = found[0].strip()
        try:
            jobpolicy.check(key, text)
        except jobpolicy.PolicyError as exc:
            problems.append((found[1], str(exc)))
            continue
        policy[key] = text
    raise_all(problems)
    return {"policy": policy} if policy else {}


# The order matters where one builder reads another's fields: initialdir before the files it places.
_BUILDERS: tuple[Callable[[_Job], dict[str, Any]], ...] = (
    _executable,
    _universe,
    _requests,
    _mail,
    _placement,
    _machine_choice,
    _gpu_kind,
    _requirements,
    _rank,
    _priority,
    _accounting_group,
    _naming,
    _arguments,
    _environment,
    _initialdir,
    _inputs,
    _streams,
    _transfer_output,
    _remaps,
    _dependencies,
    _retries,
    _start_time,
    _throttle,
    _policy,
)


# --- small readers -----------------------------------------------------------------------------------


def strip_comment(value: str) -> str:
    # '#' starts a comment unless it sits inside quotes.
    quote = None
    for i, ch in enumerate(value):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or value[i - 1].isspace()):
            return value[:i]
    return value


def unknown_key_message(key: str) -> str:
    close = suggest_key(key, [*KEYS, *_ALIASES])
    if close:
        return f"unknown key '{key}' — did you mean '{close}'?"
    return (
        f"unknown key '{key}'; see the submission keys in the README "
        "(a macro you define must be used as $(NAME) somewhere in the file)"
    )


def parse_int(text: str, low: int, high: int, key: str, line: int) -> int:
    text = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        if re.fullmatch(r"[+-]?[0-9]+", text):
            raise KeyProblemError(line, f"{key} has {len(text):,} digits, which is out of range; use {low} to {high}")
        raise KeyProblemError(line, f"{key} must be a whole number, got '{shown(text)}'")
    value = int(text)
    if not low <= value <= high:
        raise KeyProblemError(line, f"{key} = {value} is out of range; use {low} to {high}")
    return value


def shown(text: str, limit: int = 40) -> str:
    """`text` as a message quotes it: cut short when long."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _node_name(value: str, line: int) -> str:
    # ASCII digits only: '²'.isdigit() is true, but int('²') fails.
    if _NODE_NUMBER.match(value):
        return f"node-{int(value)}"
    if not _NODE_NAME.match(value):
        raise KeyProblemError(
            line, f"'{shown(value)}' is not a node name; write client = 2 (for node-2) or node = NAME"
        )
    return value


def _file_ref(text: str, line: int, what: str) -> InputFile:
    path = PurePosixPath(text)
    name = path.name
    if not name or name in (".", ".."):
        raise KeyProblemError(line, f"'{text}' is not a file name; name the {what} file, such as data.csv")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise KeyProblemError(
            line,
            f"the {what} file name '{shown(name)}' is {len(name.encode()):,} bytes; "
            f"the limit is {MAX_NAME_BYTES} bytes; rename the file",
        )
    return InputFile(source=text, name=name, line=line)


def _output_path(text: str, line: int) -> str:
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts:
        raise KeyProblemError(
            line, f"output '{text}' must be a path inside the job's folder, such as results/ or out.csv"
        )
    return str(path)


def _leaves_folder(path: PurePosixPath) -> bool:
    """Whether a file's path names no file below the folder it is relative to (absolute, `..`, or no name)."""
    return path.is_absolute() or ".." in path.parts or not path.name


def raise_all(problems: list[tuple[int, str]]) -> None:
    """Raise the (line, message) problems one builder found as one KeyProblemError (none: return)."""
    if problems:
        raise KeyProblemError(*problems[0], more=tuple(problems[1:]))


def _result_path(text: str, line: int, key: str) -> str:
    path = PurePosixPath(text)
    if _leaves_folder(path):
        raise KeyProblemError(
            line,
            f"{key} = {text}: the file comes back with the job's results, so name it inside the results folder, "
            "such as out.$(Process).txt (or /dev/null to keep none)",
        )
    return str(path)


def env_and_args_message(size: int) -> str:
    return (
        f"environment and arguments take {size:,} bytes; the limit is {MAX_ENV_AND_ARGS_BYTES:,} (64 KB) together; "
        "pass big inputs as a data file"
    )
