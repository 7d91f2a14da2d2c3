"""The names HTCondor's `input`, `output`, `error` and `log` give a job's standard streams.

Kept in the job's `streams` field: only the names a submission gave (an empty field is `stdout` and
`stderr`, as before). A Slurm or PBS script's `%j` stays a marker there until it is read, since the job's
id is known only once its row exists.  The node reads which file feeds stdin; `results` reads which
names stdout and stderr come back under; the event log is written when `log` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# A name's stand-in for the job's id (Slurm's %j), filled in when the name is read.
JOB_ID_MARKER = "{SLURM_JOB_ID}"


@dataclass(frozen=True)
class Streams:
    """One job's: the staged file fed to stdin ("": none), the names stdout and stderr come back under
    (relative to the results folder), the submission's event log ("": none), and the folder its output
    files come back into (HTCondor's initialdir; "": the results folder itself), and the granted host folder
    it starts in (an absolute initialdir; "": its own folder)."""

    stdin: str = ""
    stdout: str = "stdout"
    stderr: str = "stderr"
    log: str = ""
    initialdir: str = ""
    chdir: str = ""


DEFAULT = Streams()
_NAMES = tuple(f.name for f in fields(Streams))


def to_field(streams: Streams) -> dict[str, str]:
    """What the job's `streams` field keeps: the names that differ from the default."""
    # Field by field, not `asdict`: a 100,000-job submission makes one per job.
    return {k: v for k in _NAMES if (v := getattr(streams, k)) != getattr(DEFAULT, k)}


def of(job: Any) -> Streams:
    """The stream names of `job` (a Job row), `%j` filled in with its id."""
    stored = job.streams if isinstance(job.streams, dict) else {}
    names = {
        k: v
        for k, v in stored.items()
        if k in DEFAULT.__dataclass_fields__ and isinstance(v, str) and (v or k not in ("stdout", "stderr"))
    }
    return Streams(**{k: v.replace(JOB_ID_MARKER, str(job.pk)) for k, v in names.items()})
