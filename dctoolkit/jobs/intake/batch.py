"""Slurm and PBS batch scripts: their `#SBATCH` / `#PBS` lines become a submission in HTCondor's language.

`./dct submit job.sh` reads the script's directives as `sbatch` / `qsub` would (the comment block at
the top, up to the first command) and writes the submission text the one parser reads: the script is
the executable, each option sets submission keys (`--cpus-per-task` -> `request_cpus`, `--array` ->
a queue statement over the indices), and the job gets the `SLURM_*` / `PBS_*` variables scripts read.
Every problem is told on the script's own line (`FILE:LINE:`), all at once; an option accepted and
not used gets a note, never silence.

An option whose feature is another key of the submission language (`--dependency` -> `after_ok`,
`--begin` -> `start_after`, `--partition` -> `labels`, `%K` -> `max_running`...) is written as that key
when `keys.KEYS` reads it, and refused as "not available in this version yet" until then.

Three values are known only later, so they are written as markers: the job id (`%j`,
`SLURM_JOB_ID`) and the user name (`%u`) are filled in by the queue once the rows exist, and the
node's name and the job's folder (`SLURM_JOB_NODELIST`, `SLURM_SUBMIT_DIR`, ...) by the node, through
`jobenv.fill_runtime`.  Pure: no ORM, no file system.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from dctoolkit.jobs import jobenv, streams
from dctoolkit.jobs.intake.condor import join_arguments
from dctoolkit.jobs.intake.keys import KEYS
from dctoolkit.jobs.jobenv import RUNTIME_VARIABLES

# The job id is filled in when a stream name is read (jobs/streams.py); the user, by the queue.
JOB_ID_MARKER = streams.JOB_ID_MARKER
USER_MARKER = "{SLURM_USER}"
# Jobs one `--array` may make, before the queue's own limit: a range is refused before it is expanded.
MAX_ARRAY_JOBS = 100_000
_INDEX_VAR = "DctArrayIndex"
_DIRECTIVE = {"slurm": "#SBATCH", "pbs": "#PBS"}
_NOT_YET = "not available in this version yet"
# `srun CMD` inside a job runs CMD (SLURM_NTASKS copies, each with its SLURM_PROCID): a bash function,
# staged with the job and read by bash through BASH_ENV (the node sets its path).
SRUN_HELPER = jobenv.SRUN_HELPER
SRUN_BASH = r"""# srun inside a dctoolkit job (one node): runs the command SLURM_NTASKS times (-n N: N times).
srun() {
  local n="${SLURM_NTASKS:-1}" i status=0
  local -a pids=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --) shift; break ;;
      -n|--ntasks) n="$2"; shift 2 ;;
      --ntasks=*) n="${1#*=}"; shift ;;
      -n[0-9]*) n="${1#-n}"; shift ;;
      -N|-c|-t|-J|-o|-e|-p|-w|-m|--nodes|--cpus-per-task|--mem|--time|--gres|--job-name|--output|--error|\
      --partition|--nodelist|--mpi|--cpu-bind|--distribution|--gpus|--ntasks-per-node|--mem-per-cpu) shift 2 ;;
      -*) shift ;;
      *) break ;;
    esac
  done
  if [ "$n" -le 1 ]; then SLURM_PROCID=0 SLURM_LOCALID=0 "$@"; return; fi
  for ((i = 0; i < n; i++)); do SLURM_PROCID=$i SLURM_LOCALID=$i "$@" & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i" || status=$?; done
  return $status
}
export -f srun
"""
_SRUN_CALL = re.compile(r"(^|[\s;&|(`])srun(\s|$)", re.MULTILINE)
T = TypeVar("T")


@dataclass(frozen=True)
class Translated:
    """A batch script as a submission: the text the parser reads, where each of its lines came from in
    the script (`lines`: generated line -> script line), the problems and notes (script line, message)."""

    dialect: str
    text: str
    script: str  # the executable's name: the script itself, staged from the submission's text
    lines: dict[int, int]
    problems: tuple[tuple[int, str], ...]
    notes: tuple[tuple[int, str], ...]
    needs_shell: bool  # no '#!' line: staged with '#!/bin/sh' first, as PBS runs such a script


def dialect_of(text: str) -> str | None:
    """ "slurm" or "pbs" when `text` is a batch script (a `#!` first line, or `#SBATCH` / `#PBS` lines in
    its leading comment block), else None (a submission file)."""
    head = _leading_block(text.splitlines())
    for _, line in head:
        if line.startswith("#SBATCH"):
            return "slurm"
        if line.startswith("#PBS"):
            return "pbs"
    return "slurm" if text.startswith("#!") else None


def leading_block_size(lines: list[str]) -> int:
    """How many lines at the top sbatch and qsub read directives from."""
    return len(_leading_block(lines))


def _leading_block(lines: list[str]) -> list[tuple[int, str]]:
    """The lines sbatch and qsub read directives from: comments and blank lines before the first command."""
    block = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        block.append((number, line.rstrip()))
    return block


# --- what the options say ----------------------------------------------------------------------------


@dataclass
class _Asked:
    """The options read so far: each (value, line); a later one replaces an earlier, as in sbatch."""

    values: dict[str, tuple[str, int]] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)  # each option as the script wrote it
    problems: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    def set(self, what: str, value: str, line: int) -> None:
        self.values[what] = (value, line)

    def get(self, what: str) -> tuple[str, int] | None:
        return self.values.get(what)

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, message))


Handler = Callable[[_Asked, str, int, str], None]


def _store(what: str) -> Handler:
    def handle(asked: _Asked, value: str, line: int, written: str) -> None:
        asked.set(what, value, line)
        asked.written[what] = written

    return handle


def _noted(note: str) -> Handler:
    def handle(asked: _Asked, value: str, line: int, written: str) -> None:
        asked.notes.append((line, f"{written}: accepted and not used: {note}"))

    return handle


def _refused(why: str) -> Handler:
    def handle(asked: _Asked, value: str, line: int, written: str) -> None:
        asked.problem(line, f"{written}: {why}")

    return handle


def _forward(key: str, feature: str) -> Handler:
    """An option that is another submission key: stored when the parser reads that key, else refused."""

    def handle(asked: _Asked, value: str, line: int, written: str) -> None:
        if _available(key):
            asked.set(key, value, line)
        else:
            asked.problem(line, f"{written}: {feature} {_NOT_YET}; remove the line")

    return handle


# The submission keys `_forward` stores under their own names, written as they were given.
FORWARDED = ("avoid", "accounting_group")


def _available(key: str) -> bool:
    rule = KEYS.get(key)
    return rule is not None and rule.use == "job"


# Slurm: long option -> (short option or "", takes a value, handler).
_SLURM: dict[str, tuple[str, bool, Handler]] = {
    "job-name": ("J", True, _store("name")),
    "output": ("o", True, _store("output")),
    "error": ("e", True, _store("error")),
    "cpus-per-task": ("c", True, _store("cpus_per_task")),
    "ntasks": ("n", True, _store("ntasks")),
    "ntasks-per-node": ("", True, _store("ntasks_per_node")),
    "nodes": ("N", True, _store("nodes")),
    "mem": ("", True, _store("mem")),
    "mem-per-cpu": ("", True, _store("mem_per_cpu")),
    "time": ("t", True, _store("time")),
    "gres": ("", True, _store("gres")),
    "gpus": ("G", True, _store("gpus")),
    "gpus-per-node": ("", True, _store("gpus")),
    "gpus-per-task": ("", True, _store("gpus")),
    "array": ("a", True, _store("array")),
    "mail-user": ("", True, _store("mail_user")),
    "mail-type": ("", True, _store("mail_type")),
    "dependency": ("d", True, _store("dependency")),
    "nodelist": ("w", True, _store("nodelist")),
    "exclude": ("x", True, _forward("avoid", "keeping a job off some nodes (avoid)")),
    "constraint": ("C", True, _store("constraint")),
    "partition": ("p", True, _store("partition")),
    "account": ("A", True, _forward("accounting_group", "charging an accounting group")),
    "tmp": ("", True, _store("tmp")),
    "begin": ("b", True, _store("begin")),
    "chdir": ("D", True, _store("chdir")),
    "export": ("", True, _store("export")),
    "nice": ("", True, _store("nice")),
    "requeue": ("", False, _noted("a job whose node is lost is queued again anyway (DCT_MAX_ATTEMPTS)")),
    "no-requeue": ("", False, _noted("a job whose node is lost is queued again up to DCT_MAX_ATTEMPTS times")),
    "qos": ("q", True, _noted("there are no qualities of service here; fair share orders the jobs")),
    "exclusive": ("", False, _noted("a job gets the cores it asks for, pinned; other jobs may share the node")),
    "open-mode": ("", True, _noted("stdout and stderr come back as whole files")),
    "mail": ("", True, _refused("unknown option; use --mail-type and --mail-user")),
    "hint": ("", True, _noted("hints about the hardware are not used")),
    "distribution": ("", True, _noted("one node, so there is nothing to distribute")),
    "threads-per-core": ("", True, _noted("a job gets whole cores")),
    "signal": ("", True, _refused("no signal is sent before the time limit here; remove the line")),
    "hold": ("H", False, _store("hold")),
    "comment": ("", True, _noted("comments are not stored")),
    "wckey": ("", True, _noted("workload keys are not used")),
    "licenses": ("L", True, _refused("licenses are not counted here; remove the line")),
    "reservation": ("", True, _refused("there are no reservations here; remove the line")),
    "clusters": ("M", True, _refused("there is one cluster here; remove the line")),
    "get-user-env": ("", False, _noted("the job gets the environment --export says")),
    "parsable": ("", False, _noted("use ./dct submit --parsable")),
    "wait": ("W", False, _refused("use ./dct submit --wait on the command line; remove the line")),
    "ntasks-per-core": ("", True, _noted("a job gets whole cores")),
    "cores-per-socket": ("", True, _noted("sockets are not chosen here")),
    "sockets-per-node": ("", True, _noted("sockets are not chosen here")),
    "mincpus": ("", True, _store("mincpus")),
    "mem-bind": ("", True, _noted("memory binding is not chosen here")),
    "cpu-bind": ("", True, _noted("a job's processes are pinned to the cores it was given")),
}
_SLURM_SHORT = {short: long for long, (short, _, _) in _SLURM.items() if short}

# PBS (PBS Pro and Torque): single-letter options.
_PBS: dict[str, tuple[bool, Handler]] = {
    "N": (True, _store("name")),
    "o": (True, _store("output")),
    "e": (True, _store("error")),
    "j": (True, _store("join")),
    "l": (True, _store("resources")),  # handled on its own: several may add up
    "J": (True, _store("array")),
    "t": (True, _store("array")),
    "M": (True, _store("mail_user")),
    "m": (True, _store("mail_type")),
    "q": (True, _store("partition")),
    "A": (True, _forward("accounting_group", "charging an accounting group")),
    "V": (False, _store("export_all")),
    "v": (True, _store("variables")),
    "W": (True, _store("attributes")),
    "a": (True, _store("begin")),
    "p": (True, _store("nice")),
    "r": (True, _noted("a job whose node is lost is queued again anyway (DCT_MAX_ATTEMPTS)")),
    "k": (True, _noted("stdout and stderr come back with the job's results")),
    "S": (True, _store("shell")),
    "h": (False, _store("hold")),
    "P": (True, _noted("projects are not used; -A names an accounting group")),
    "c": (True, _noted("jobs are not checkpointed here")),
    "u": (True, _refused("a job runs as the user who submits it; remove the line")),
    "d": (True, _store("chdir")),
}


def _read_directives(text: str, dialect: str, asked: _Asked) -> None:
    prefix = _DIRECTIVE[dialect]
    lines = text.splitlines()
    block = _leading_block(lines)
    for number, line in block:
        if not line.startswith(prefix):
            continue
        rest = line[len(prefix) :]
        if rest and not rest[0].isspace():
            continue  # `#SBATCHX`: not a directive
        try:
            words = shlex.split(rest, comments=True)
        except ValueError as exc:
            asked.problem(number, f"cannot read the {prefix} line ({exc}); close every quote")
            continue
        if dialect == "slurm":
            _slurm_words(words, number, asked)
        else:
            _pbs_words(words, number, asked)
    after = len(block) + 1
    for number, line in enumerate(lines[after - 1 :], after):
        if line.startswith(prefix):
            asked.notes.append(
                (
                    number,
                    f"this {prefix} line comes after the script's first command, so it is not read "
                    f"(as {'sbatch' if dialect == 'slurm' else 'qsub'} does); move it above the first command",
                )
            )


def _slurm_words(words: list[str], line: int, asked: _Asked) -> None:
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            spec = _SLURM.get(name)
            if spec is None:
                asked.problem(line, f"--{name} is not an sbatch option this version knows; remove the line")
                break  # the rest of the line may be its value
            _, takes, handler = spec
            if takes and not eq:
                if i >= len(words):
                    asked.problem(line, f"--{name} needs a value; write it like --{name}=VALUE")
                    continue
                value, i = words[i], i + 1
            elif not takes and eq:
                asked.problem(line, f"--{name} takes no value; write --{name}")
                continue
            handler(asked, value, line, f"--{name}" + (f"={value}" if takes else ""))
        elif word.startswith("-") and len(word) > 1:
            letter, value = word[1], word[2:].removeprefix("=")
            long = _SLURM_SHORT.get(letter)
            if long is None:
                asked.problem(line, f"-{letter} is not an sbatch option this version knows; remove the line")
                break  # the rest of the line may be its value
            _, takes, handler = _SLURM[long]
            if takes and not value:
                if i >= len(words):
                    asked.problem(line, f"-{letter} needs a value; write it like -{letter} VALUE")
                    continue
                value, i = words[i], i + 1
            handler(asked, value, line, f"-{letter}" + (f" {value}" if takes else ""))
        else:
            asked.problem(line, f"'{word}' is not an sbatch option; options start with - or --")


def _pbs_words(words: list[str], line: int, asked: _Asked) -> None:
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-") or len(word) < 2:
            asked.problem(line, f"'{word}' is not a qsub option; options start with -")
            continue
        letter, value = word[1], word[2:]
        spec = _PBS.get(letter)
        if spec is None:
            asked.problem(line, f"-{letter} is not a qsub option this version knows; remove the line")
            break  # the rest of the line may be its value
        takes, handler = spec
        if takes and not value:
            if i >= len(words):
                asked.problem(line, f"-{letter} needs a value; write it like -{letter} VALUE")
                continue
            value, i = words[i], i + 1
        if letter == "l":
            _pbs_resources(value, line, asked)
            continue
        handler(asked, value, line, f"-{letter}" + (f" {value}" if takes else ""))


def _pbs_resources(value: str, line: int, asked: _Asked) -> None:
    """`-l walltime=1:00:00,mem=4gb`, `-l nodes=1:ppn=4`, `-l select=1:ncpus=4:mem=8gb:ngpus=1`."""
    for part in re.split(r",(?=[A-Za-z_]+=)", value):
        name, eq, setting = part.partition("=")
        name = name.strip().lower()
        if not eq or not setting:
            asked.problem(line, f"-l {part}: write it like -l walltime=01:00:00 or -l select=1:ncpus=4:mem=8gb")
        elif name == "walltime":
            asked.set("time", setting, line)
        elif name in ("mem", "pmem", "vmem"):
            asked.set("pbs_mem" if name != "pmem" else "pbs_pmem", setting, line)
        elif name in ("ncpus", "ppn"):
            asked.set("cpus_per_task", setting, line)
        elif name in ("ngpus", "gpus"):
            asked.set("gpus", setting, line)
        elif name in ("nodes", "select"):
            _pbs_chunk(name, setting, line, asked)
        elif name in ("place", "cput", "file", "software", "arch"):
            asked.notes.append((line, f"-l {part}: accepted and not used"))
        else:
            asked.problem(line, f"-l {name} is not a resource this version knows; remove it")


def _pbs_chunk(name: str, setting: str, line: int, asked: _Asked) -> None:
    count, *rest = setting.split(":")
    if count.strip() != "1":
        asked.problem(
            line, f"-l {name}={setting}: a job runs on one node here (no multi-node jobs); write {name}=1:..."
        )
    for item in rest:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key in ("ppn", "ncpus"):
            asked.set("cpus_per_task", value, line)
        elif key == "mem":
            asked.set("pbs_mem", value, line)
        elif key in ("ngpus", "gpus"):
            asked.set("gpus", value or "1", line)
        elif key in ("mpiprocs", "ompthreads"):
            asked.notes.append((line, f"-l {name}: {key} is accepted and not used (the job has its cores)"))
        elif not eq:
            _forward("labels", "choosing nodes by label (a PBS node property)")(asked, key, line, f"-l {name}")
        else:
            asked.problem(line, f"-l {name}: '{key}' is not a resource this version knows; remove it")


# --- values in each scheduler's words --------------------------------------------------------------


_SLURM_RELATIVE = re.compile(r"^now\+([0-9]{1,9})(seconds?|minutes?|hours?|days?|weeks?|)$", re.IGNORECASE)
_SLURM_UNIT = {"": "s", "sec": "s", "min": "m", "hou": "h", "day": "d", "wee": "w"}
_CLOCK = re.compile(r"^([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?$")
_PBS_BEGIN = re.compile(r"^([0-9]{4,12})(?:\.([0-9]{2}))?$")


def begin_time(text: str, dialect: str, now: datetime | None = None) -> str:
    """sbatch `--begin` / qsub `-a` as `start_after`'s value: `+90m`, or an ISO time in the server's local time.

    Slurm: `now+1hour`, `2026-12-01T22:00[:SS]`, `16:00` (today, or tomorrow once past). PBS:
    `[[[[CC]YY]MM]DD]hhmm[.SS]` (a time of day already past is tomorrow's, as qsub reads it).
    """
    now = now or datetime.now().astimezone()  # the server's local time, with its offset
    value = text.strip()
    if dialect == "pbs":
        match = _PBS_BEGIN.match(value)
        if not match or len(match[1]) % 2:
            raise _BadValueError(f"'{value}' is not a PBS time; write [[[[CC]YY]MM]DD]hhmm[.SS], such as 2200")
        digits = match[1]
        prefix = digits[:-4]
        parts = [int(prefix[i - 2 : i]) for i in range(len(prefix), 0, -2)]  # DD, MM, YY, CC from the right
        fields = {"hour": int(digits[-4:-2]), "minute": int(digits[-2:]), "second": int(match[2] or 0)}
        for name, part in zip(("day", "month"), parts, strict=False):
            fields[name] = part
        if len(parts) >= 3:
            fields["year"] = (parts[3] if len(parts) > 3 else now.year // 100) * 100 + parts[2]
        return _at(now, fields, roll="day" not in fields, what="a PBS time")
    relative = _SLURM_RELATIVE.match(value)
    if relative:
        return f"+{relative[1]}{_SLURM_UNIT[relative[2][:3].lower()]}"
    clock = _CLOCK.match(value)
    if clock:
        fields = {"hour": int(clock[1]), "minute": int(clock[2]), "second": int(clock[3] or 0)}
        return _at(now, fields, roll=True, what="a time of day")
    if re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return value
    raise _BadValueError(
        f"'{value}' is not a start time read here; write now+1hour, 16:00 or 2026-12-01T22:00 "
        "(midnight, noon, teatime and tomorrow are not read)"
    )


def _at(now: datetime, fields: dict[str, int], roll: bool, what: str) -> str:
    try:
        when = now.replace(
            year=fields.get("year", now.year),
            month=fields.get("month", now.month),
            day=fields.get("day", now.day),
            hour=fields["hour"],
            minute=fields["minute"],
            second=fields["second"],
            microsecond=0,
        )
    except ValueError:
        raise _BadValueError(f"not {what} that exists") from None
    if roll and when <= now:
        when += timedelta(days=1)
    return when.isoformat(timespec="seconds")


class _BadValueError(ValueError):
    pass


def slurm_seconds(text: str) -> int | None:
    """Seconds of a Slurm time (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`); None for no limit."""
    value = text.strip().lower()
    if value in ("unlimited", "infinite", "0"):
        return None
    days = 0
    match = re.fullmatch(r"(\d+)-(\d+(?::\d+){0,2})", value)
    if match:
        days, value = int(match.group(1)), match.group(2)
        parts = [int(p) for p in value.split(":")]
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif re.fullmatch(r"\d+(?::\d+){0,2}", value):
        parts = [int(p) for p in value.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts
    else:
        raise _BadValueError(f"'{text}' is not a Slurm time; write minutes (30), M:S, H:M:S, D-H, D-H:M or D-H:M:S")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        return None
    return total


def slurm_mb(text: str, default_unit: str = "M") -> int:
    """MB of a Slurm size (`4G`, `500`, `500M`, `2T`; a bare number is MB)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", text.strip(), re.IGNORECASE)
    if not match:
        raise _BadValueError(f"'{text}' is not a size; write it like 4G, 500M or 500 (MB)")
    factor = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[(match.group(2) or default_unit).upper()]
    return max(1, round(float(match.group(1)) * factor))


def pbs_mb(text: str) -> int:
    """MB of a PBS size (`4gb`, `500mb`, `1024kb`; a bare number is bytes, as PBS reads it)."""
    match = re.fullmatch(r"(\d+)\s*([kmgt]?)(b|w)?", text.strip(), re.IGNORECASE)
    if not match:
        raise _BadValueError(f"'{text}' is not a PBS size; write it like 4gb or 500mb")
    unit = match.group(2).lower()
    factor = {"": 1 / 1024**2, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2}[unit]
    return max(1, round(int(match.group(1)) * factor))


@dataclass(frozen=True)
class Array:
    indices: tuple[int, ...]
    step: int
    throttle: int | None


def parse_array(text: str, limit: int = MAX_ARRAY_JOBS) -> Array:
    """`0-9`, `1,3,5-7`, `0-15:4`, with `%K`; also PBS's `X-Y:Z%K`."""
    value, _, throttle = text.strip().partition("%")
    if throttle and not throttle.isdigit():
        raise _BadValueError(f"'%{throttle}' is not a limit; write it like --array=0-9%2")
    indices: list[int] = []
    steps = set()
    for part in value.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not match:
            raise _BadValueError(
                f"'{text}' is not an array; write it like 0-9, 1,3,5-7 or 0-15:4, with %K to run K at once"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        step = int(match.group(3) or 1)
        if high < low or step < 1:
            raise _BadValueError(f"'{part}' counts down or by 0; write LOW-HIGH with LOW <= HIGH, such as 0-9")
        count = (high - low) // step + 1
        if len(indices) + count > limit:
            raise _BadValueError(f"'{text}' makes more than {limit:,} jobs; submit fewer at once")
        indices.extend(range(low, high + 1, step))
        steps.add(step)
    ordered = tuple(sorted(set(indices)))
    return Array(ordered, steps.pop() if len(steps) == 1 else 1, int(throttle) if throttle else None)


def _file_pattern(text: str, dialect: str, job_name: str, padded: set[int]) -> str:
    """A Slurm `--output` pattern in the submission's language: `%A` -> $(Cluster), `%a` -> the index,
    `%x` the name, `%j` (`%J`) and `%u` markers the queue fills in; `%N` and the rest are refused."""
    if dialect == "pbs":
        return text.replace("^array_index^", f"$({_INDEX_VAR})")
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        match = re.match(r"%(\d*)([%jJAaxuNsntb])", text[i:])
        if not match:
            raise _BadValueError(f"'{text}': '%{text[i + 1 : i + 2]}' is not a pattern here; use %j %A %a %x %u or %%")
        width, letter = match.group(1), match.group(2)
        i += len(match.group(0))
        if letter == "%":
            out.append("%")
        elif letter == "a":
            if width:
                padded.add(int(width))
                out.append(f"$({_INDEX_VAR}Pad{int(width)})")
            else:
                out.append(f"$({_INDEX_VAR})")
        elif width:
            raise _BadValueError(f"'{text}': a width (%{width}{letter}) is only read for %a here; write %{letter}")
        elif letter == "A":
            out.append("$(Cluster)")
        elif letter in "jJ":
            out.append(JOB_ID_MARKER)  # %J is jobid.stepid, and a batch script's step shows as the job id
        elif letter == "x":
            out.append(job_name)
        elif letter == "u":
            out.append(USER_MARKER)
        elif letter == "N":
            raise _BadValueError(
                f"'{text}': %N (the node's name) is not known when the job is submitted here, and the file's "
                "name is fixed then; use %j"
            )
        else:
            raise _BadValueError(
                f"'{text}': %{letter} has no meaning for a one-task job here; use %j %A %a %x %u or %%"
            )
    return "".join(out)


# --- the submission ------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.origins: dict[int, int] = {}

    def add(self, text: str, origin: int) -> None:
        self.lines.append(text)
        self.origins[len(self.lines)] = origin


def translate(text: str, source: str, dialect: str) -> Translated:
    """The submission a batch script means (its problems and notes on the script's lines)."""
    asked = _Asked()
    _read_directives(text, dialect, asked)
    script = source.replace("\\", "/").rsplit("/", 1)[-1] or "job.sh"
    writer = _Writer()
    first = 1
    writer.add(f"executable = {join_arguments([script])[1:-1]}", first)
    if _SRUN_CALL.search(text):
        if text.split("\n", 1)[0].startswith("#!") and "bash" in text.split("\n", 1)[0]:
            writer.add(f"data = {SRUN_HELPER}", 1)
        else:
            asked.notes.append((1, "srun is provided to bash scripts only ('#!/bin/bash'); here it is not found"))
    _Fields(asked, dialect, writer, script).write()
    needs_shell = not text.startswith("#!")
    return Translated(
        dialect=dialect,
        text="\n".join(writer.lines) + "\n",
        script=script,
        lines=writer.origins,
        problems=tuple(asked.problems),
        notes=tuple(asked.notes),
        needs_shell=needs_shell,
    )


class _Fields:
    """Writes the submission keys from what was asked, checking each value in the scheduler's words."""

    def __init__(self, asked: _Asked, dialect: str, writer: _Writer, script: str) -> None:
        self.asked, self.dialect, self.writer, self.script = asked, dialect, writer, script
        self.cpus_per_task = self.ntasks = 1

    def value(self, what: str, check: Callable[[str], T]) -> tuple[T, int] | None:
        found = self.asked.get(what)
        if not found:
            return None
        try:
            return check(found[0]), found[1]
        except _BadValueError as exc:
            self.asked.problem(found[1], str(exc))
            return None

    def write(self) -> None:
        slurm = self.dialect == "slurm"
        self._nodes()
        cpus, line_cpus = self._cpus()
        self.writer.add(f"request_cpus = {cpus}", line_cpus)
        memory = self._memory(cpus)
        if memory:
            self.writer.add(f"request_memory = {memory[0]}MB", memory[1])
        gpus = self._gpus()
        time = self.value("time", slurm_seconds)
        if time and time[0]:
            self.writer.add(f"max_runtime = {time[0]}s", time[1])
        name = self.asked.get("name")
        job_name = name[0] if name else self.script  # sbatch and qsub name a job after its script
        self.writer.add(f"name = {job_name}", name[1] if name else 1)
        array = self.value("array", parse_array)
        padded: set[int] = set()
        self._streams(job_name, padded, array is not None)
        self._mail()
        self._forwarded(array)
        self._refusals()
        self._environment(cpus, memory, gpus, job_name, array, slurm)
        self._queue(array, padded)

    def _nodes(self) -> None:
        found = self.asked.get("nodes")
        if found and found[0].strip() not in ("1", "1-1"):
            self.asked.problem(
                found[1], f"{self.asked.written['nodes']}: a job runs on one node here (no multi-node jobs)"
            )

    def _cpus(self) -> tuple[int, int]:
        def count(text: str) -> int:
            if not re.fullmatch(r"\d{1,4}", text.strip()) or int(text) < 1:
                raise _BadValueError(f"'{text}' is not a count; write a whole number such as 4")
            return int(text)

        per_task = self.value("cpus_per_task", count)
        tasks = self.value("ntasks", count) or self.value("ntasks_per_node", count)
        minimum = self.value("mincpus", count)
        total = (per_task[0] if per_task else 1) * (tasks[0] if tasks else 1)
        if minimum and minimum[0] > total:
            total = minimum[0]
        line = per_task[1] if per_task else tasks[1] if tasks else minimum[1] if minimum else 1
        self.cpus_per_task = per_task[0] if per_task else 1
        self.ntasks = tasks[0] if tasks else 1
        return int(total), line

    def _memory(self, cpus: int) -> tuple[int, int] | None:
        if self.dialect == "pbs":
            found = self.value("pbs_mem", pbs_mb)
            per = self.value("pbs_pmem", pbs_mb)
            if per and not found:
                return int(per[0]) * cpus, per[1]
            return (int(found[0]), found[1]) if found else None
        mem = self.asked.get("mem")
        if mem and mem[0].strip() == "0":
            self.asked.problem(
                mem[1], "--mem=0 (all of a node's memory) is not supported here; give a size, such as --mem=8G"
            )
            return None
        whole = self.value("mem", slurm_mb)
        per = self.value("mem_per_cpu", slurm_mb)
        if whole and per:
            self.asked.problem(per[1], "--mem and --mem-per-cpu both given; keep one of them (sbatch refuses both)")
        if per:
            return int(per[0]) * cpus, per[1]
        return (int(whole[0]), whole[1]) if whole else None

    def _gpus(self) -> int:
        kind = ""
        found = self.asked.get("gres")
        count = 0
        line = 0
        if found:
            value, line = found
            match = re.fullmatch(r"gpu(?::([A-Za-z][\w.-]*))?(?::(\d+))?", value.strip())
            if not match:
                self.asked.problem(line, f"--gres={value}: only GPUs are counted here; write --gres=gpu:N")
                return 0
            kind, count = match.group(1) or "", int(match.group(2) or 1)
        other = self.asked.get("gpus")
        if other:
            value, line = other
            match = re.fullmatch(r"(?:([A-Za-z][\w.-]*):)?(\d+)", value.strip())
            if not match:
                self.asked.problem(line, f"'{value}' is not a GPU count; write it like --gpus=2 or --gpus=a100:2")
                return 0
            kind, count = match.group(1) or kind, int(match.group(2))
        if count:
            self.writer.add(f"request_gpus = {count}", line)
        if kind:
            if _available("gpu_type"):
                self.writer.add(f"gpu_type = {kind}", line)
            else:
                self.asked.problem(line, f"choosing a GPU by kind ('{kind}') is {_NOT_YET}; ask for gpu:{count}")
        return count

    def _streams(self, job_name: str, padded: set[int], array: bool) -> None:
        """stdout and stderr names: as given, else sbatch's `slurm-%j.out` (`slurm-%A_%a.out` for an
        array; stderr in the same file) or qsub's `NAME.oID` and `NAME.eID`."""
        slurm = self.dialect == "slurm"
        names: dict[str, tuple[str, int]] = {}
        for what in ("output", "error"):
            found = self.asked.get(what)
            if not found:
                continue
            value, line = found
            try:
                name = _file_pattern(value, self.dialect, job_name, padded)
            except _BadValueError as exc:
                self.asked.problem(line, str(exc))
                continue
            name = name.split(":", 1)[1] if not slurm and ":" in name else name  # PBS: HOST:PATH
            if name.startswith("/") or ".." in name.split("/"):
                self.asked.problem(
                    line,
                    f"{self.asked.written.get(what, what)}: the file comes back with the job's results "
                    "(./dct results), so name it inside them, such as logs/%j.out; a job cannot write into your "
                    "folders here",
                )
                continue
            names[what] = (name, line)
        if slurm:
            default = f"slurm-$(Cluster)_$({_INDEX_VAR}).out" if array else f"slurm-{JOB_ID_MARKER}.out"
            names.setdefault("output", (default, 1))
            names.setdefault("error", names["output"])  # sbatch: stderr goes to --output's file too
        else:
            names.setdefault("output", (f"{job_name}.o{JOB_ID_MARKER}", 1))
            names.setdefault("error", (f"{job_name}.e{JOB_ID_MARKER}", 1))
        joined = self.asked.get("join")
        if joined:
            value, line = joined
            if value.strip() == "oe":
                names["error"] = (names["output"][0], line)
            elif value.strip() == "eo":
                names["output"] = (names["error"][0], line)
            elif value.strip() != "n":
                self.asked.problem(line, f"-j {value}: write -j oe, -j eo or -j n")
        for what, (pattern, line) in names.items():
            # sbatch's %a outside an array: its "no value" number.
            name = pattern if array else re.sub(rf"\$\({_INDEX_VAR}(Pad\d+)?\)", "4294967294", pattern)
            self.writer.add(f"{what} = {name}", line)

    def _mail(self) -> None:
        user = self.asked.get("mail_user")
        kind = self.asked.get("mail_type")
        if user:
            self.writer.add(f"notify_user = {user[0]}", user[1])
        if self.dialect == "slurm":
            words = {w.strip().upper() for w in kind[0].split(",")} if kind else set()
            known = {"NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT", "TIME_LIMIT"}
            known |= {"TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS"}
            if kind and words - known:
                self.asked.problem(kind[1], f"--mail-type={kind[0]}: use NONE, BEGIN, END, FAIL or ALL")
                return
            ends, fails = bool(words & {"END", "ALL"}), bool(words & {"FAIL", "TIME_LIMIT", "INVALID_DEPEND"})
            begins = bool(words & {"BEGIN", "REQUEUE", "STAGE_OUT"} or any(w.startswith("TIME_LIMIT_") for w in words))
        else:
            letters = set(kind[0].strip()) if kind else {"a"}
            if letters - set("abejn"):
                self.asked.problem(kind[1] if kind else 1, f"-m {kind[0] if kind else ''}: use a, b, e or n")
                return
            ends, fails, begins = "e" in letters, "a" in letters, "b" in letters
        line = kind[1] if kind else user[1] if user else 1
        if begins and kind:
            self.asked.notes.append((kind[1], "mail is sent when a job ends, not when it starts or is queued again"))
        word = "Complete" if ends else "Error" if fails else "Never"
        if user or kind:
            self.writer.add(f"notification = {word}", line)

    def _forwarded(self, array: tuple[Array, int] | None) -> None:
        dependency = self.asked.get("dependency")
        attributes = self.asked.get("attributes")
        if attributes:
            value, line = attributes
            if value.startswith("depend="):
                dependency = (value[len("depend=") :], line)
            else:
                self.asked.problem(line, f"-W {value}: only -W depend=... is read here")
        if dependency:
            self._dependency(*dependency)
        begin = self.asked.get("begin")
        if begin:
            what = self.asked.written["begin"]
            if _available("start_after"):
                try:
                    self.writer.add(f"start_after = {begin_time(begin[0], self.dialect)}", begin[1])
                except _BadValueError as exc:
                    self.asked.problem(begin[1], f"{what}: {exc}")
            else:
                self.asked.problem(begin[1], f"{what}: a deferred start is {_NOT_YET}; remove the line")
        for key in FORWARDED:  # stored by `_forward` only when the key is read (else refused there)
            if found := self.asked.get(key):
                self.writer.add(f"{key} = {found[0]}", found[1])
        self._labels()
        self._placement(array)

    def _labels(self) -> None:
        labels: list[tuple[str, int]] = []
        for what in ("partition", "constraint"):
            found = self.asked.get(what)
            if not found:
                continue
            value, line = found
            if "|" in value or "[" in value or "*" in value:
                self.asked.problem(line, f"'{value}': only labels joined by & (all must hold) are read here")
                continue
            labels += [(w.strip(), line) for w in re.split(r"[&,]", value) if w.strip()]
        if labels:
            if _available("labels"):
                self.writer.add(f"labels = {', '.join(w for w, _ in labels)}", labels[0][1])
            else:
                option = " and ".join(
                    self.asked.written[w] for w in ("partition", "constraint") if w in self.asked.written
                )
                self.asked.problem(labels[0][1], f"{option}: choosing nodes by label is {_NOT_YET}; remove the line")

    def _priority(self, nice: tuple[str, int], slurm: bool) -> None:
        """Slurm's --nice N (lower first; --nice alone is 100) and PBS -p N (higher first) as `priority`."""
        text = nice[0].strip() or ("100" if slurm else "")
        if not re.fullmatch(r"[+-]?[0-9]{1,7}", text):
            option = "--nice" if slurm else "-p"
            self.asked.problem(nice[1], f"{option} {text}: give a whole number, such as {option} 10")
            return
        self.writer.add(f"priority = {-int(text) if slurm else int(text)}", nice[1])

    def _placement(self, array: tuple[Array, int] | None) -> None:
        slurm = self.dialect == "slurm"
        nodelist = self.asked.get("nodelist")
        if nodelist:
            names = [n.strip() for n in nodelist[0].split(",") if n.strip()]
            if len(names) == 1 or _available("avoid"):
                self.writer.add(f"node = {', '.join(names)}", nodelist[1])
            else:
                self.asked.problem(nodelist[1], f"--nodelist={nodelist[0]}: give one node (several are {_NOT_YET})")
        tmp = self.value("tmp", slurm_mb)
        if tmp:
            self.writer.add(f"request_disk = {tmp[0]}MB", tmp[1])
        nice = self.asked.get("nice")
        if nice:
            self._priority(nice, slurm)
        if array and array[0].throttle is not None:
            limit = array[0].throttle
            if _available("max_running"):
                self.writer.add(f"max_running = {limit}", array[1])
            else:
                self.asked.problem(
                    array[1], f"%{limit}: running at most K array jobs at once is {_NOT_YET}; remove %{limit}"
                )
        hold = self.asked.get("hold")
        if hold:
            self.writer.add("hold = true", hold[1])

    def _dependency(self, value: str, line: int) -> None:
        kinds = {"afterok": "after_ok", "afterany": "after_any", "afternotok": "after_fail"}
        if "?" in value or "singleton" in value:
            self.asked.problem(line, f"dependency '{value}': 'singleton' and '?' (either) are not supported here")
            return
        found: dict[str, list[str]] = {}
        for part in value.split(","):
            kind, _, ids = part.strip().partition(":")
            key = kinds.get(kind.strip().lower())
            if key is None or not ids or not re.fullmatch(r"[\d.\[\]:+-]+", ids):
                self.asked.problem(line, f"dependency '{part}': write afterok:ID[:ID], afterany:ID or afternotok:ID")
                return
            found.setdefault(key, []).extend(i.split(".")[0] for i in ids.split(":") if i)
        for key, parents in found.items():
            if _available(key):
                self.writer.add(f"{key} = {', '.join(parents)}", line)
            else:
                self.asked.problem(line, f"dependency '{value}': job dependencies are {_NOT_YET}; remove the line")
                return

    def _refusals(self) -> None:
        chdir = self.asked.get("chdir")
        if chdir:
            # The job starts in a host folder granted to its user (checked against the grants at submit).
            if chdir[0].startswith("/"):
                self.writer.add(f"initialdir = {chdir[0]}", chdir[1])
            else:
                self.asked.problem(
                    chdir[1],
                    f"{self.asked.written['chdir']}: give the absolute path of a folder granted to you "
                    "(the job runs there), or leave the line out (it runs in its own folder)",
                )
        shell = self.asked.get("shell")
        if shell:
            self.asked.problem(shell[1], f"-S {shell[0]}: put '#!{shell[0]}' as the script's first line instead")

    def _environment(
        self,
        cpus: int,
        memory: tuple[int, int] | None,
        gpus: int,
        job_name: str,
        array: tuple[Array, int] | None,
        slurm: bool,
    ) -> None:
        env: dict[str, str] = {}
        name = job_name
        if slurm:
            env.update(
                {
                    "SLURM_JOB_NAME": name,
                    "SLURM_CPUS_PER_TASK": str(self.cpus_per_task),
                    "SLURM_NTASKS": str(self.ntasks),
                    "SLURM_NPROCS": str(self.ntasks),
                    "SLURM_NNODES": "1",
                    "SLURM_JOB_NUM_NODES": "1",
                    "SLURM_CPUS_ON_NODE": str(cpus),
                    "SLURM_JOB_CPUS_PER_NODE": str(cpus),
                    "SLURM_TASKS_PER_NODE": str(self.ntasks),
                    "SLURM_CLUSTER_NAME": "dctoolkit",
                    "SLURM_SUBMIT_HOST": "dctoolkit",
                    "SLURM_JOB_PARTITION": "",
                }
            )
            if memory:
                env["SLURM_MEM_PER_NODE"] = str(memory[0])
            if gpus:
                env["SLURM_GPUS"] = env["SLURM_GPUS_ON_NODE"] = str(gpus)
        else:
            env.update(
                {
                    "PBS_JOBNAME": name,
                    "NCPUS": str(cpus),
                    "PBS_NCPUS": str(cpus),
                    "PBS_NUM_NODES": "1",
                    "PBS_NUM_PPN": str(cpus),
                    "PBS_ENVIRONMENT": "PBS_BATCH",
                    "PBS_QUEUE": "batch",
                    "PBS_O_SHELL": "/bin/sh",
                }
            )
        for variable in RUNTIME_VARIABLES[self.dialect]:
            env[variable] = ""  # the node fills these in (jobenv.fill_runtime)
        if any(line.startswith(f"data = {SRUN_HELPER}") for line in self.writer.lines):
            env["BASH_ENV"] = ""
        if array:
            plan = array[0]
            if slurm:
                env.update(
                    {
                        "SLURM_ARRAY_JOB_ID": "$(Cluster)",
                        "SLURM_ARRAY_TASK_ID": f"$({_INDEX_VAR})",
                        "SLURM_ARRAY_TASK_COUNT": str(len(plan.indices)),
                        "SLURM_ARRAY_TASK_MIN": str(min(plan.indices)),
                        "SLURM_ARRAY_TASK_MAX": str(max(plan.indices)),
                        "SLURM_ARRAY_TASK_STEP": str(plan.step),
                    }
                )
            else:
                env.update({"PBS_ARRAY_INDEX": f"$({_INDEX_VAR})", "PBS_ARRAYID": f"$({_INDEX_VAR})"})
                env["PBS_ARRAY_ID"] = "$(Cluster)[]"
        line = self._export(env, slurm)
        entries = " ".join(f"{k}={_env_word(v)}" for k, v in env.items())
        self.writer.add(f'environment = "{entries}"', line)

    def _export(self, env: dict[str, str], slurm: bool) -> int:
        """`--export` (Slurm; default ALL) and `-V` / `-v` (PBS; default none): what the submitter's
        environment gives the job, as getenv (never the server's secrets, nor what the sandbox sets)."""
        keep = (
            "!PATH, !HOME, !TMPDIR, !PWD, !OLDPWD, !SHLVL, !_, !SHELL, !DCT_*, !SLURM_*, !PBS_*, !CUDA_VISIBLE_DEVICES"
        )
        keep += ", !OMP_NUM_THREADS, !VIRTUAL_ENV, !PYTHON*"
        found = self.asked.get("export") if slurm else self.asked.get("variables")
        export_all = (found is None and slurm) or bool(self.asked.get("export_all"))
        every = self.asked.get("export_all")
        line = found[1] if found else every[1] if every else 1
        names: list[str] = []
        if found:
            for part in [p.strip() for p in found[0].split(",") if p.strip()]:
                name, eq, value = part.partition("=")
                if slurm and name.upper() == "ALL" and not eq:
                    export_all = True
                elif slurm and name.upper() == "NONE" and not eq:
                    export_all = False
                elif eq:
                    env[name] = value
                else:
                    names.append(name)
        if export_all:
            self.writer.add(f"getenv = *, {keep}", line)
        elif names:
            self.writer.add(f"getenv = {', '.join(names)}, {keep}", line)
        return line

    def _queue(self, array: tuple[Array, int] | None, padded: set[int]) -> None:
        if not array:
            self.writer.add("queue", 1)
            return
        plan, line = array
        widths = sorted(padded)
        names = [_INDEX_VAR, *(f"{_INDEX_VAR}Pad{w}" for w in widths)]
        rows = [" ".join([str(i), *(str(i).zfill(w) for w in widths)]) for i in plan.indices]
        self.writer.add(f"queue {', '.join(names)} from (", line)
        for row in rows:
            self.writer.add(f"  {row}", line)
        self.writer.add(")", line)


def _env_word(value: str) -> str:
    """A value in the environment's new syntax: single quotes around one with blanks or quotes."""
    quoted = value.replace('"', '""')
    if not value or any(ch in value for ch in " \t'"):
        quoted = "'" + quoted.replace("'", "''") + "'"
    return quoted
