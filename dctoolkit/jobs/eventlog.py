"""A submission's job event log in HTCondor's user-log format (the file `log = NAME` asks for).

Each event is a block that `htcondor2.JobEventLog` (and condor_wait, DAGMan, pegasus) reads:

    005 (042.003.000) 2026-12-02 02:40:10 Job terminated.
        (1) Normal termination (return value 0)
    ...

The cluster is the submission's id, the process the job's number in it.  One file per submission,
`events.log` in its folder in storage (a fixed name: no user path is ever made in storage);
`results` returns it under the name `log` gave.  Formatting is pure; `append` adds a block with an
exclusive lock, since the server (submit) and several nodes (execute, terminate) write one file.
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime
from pathlib import Path

FILE_NAME = "events.log"
# HTCondor's "host" in an event is a sinful string: <address:port?...>; here it only names the machine.
_HOST = "<127.0.0.1:0?alias={name}>"

SUBMIT, EXECUTE, EVICTED, TERMINATED, ABORTED, HELD, RELEASED = "000", "001", "004", "005", "009", "012", "013"
_USAGE_LINES = (
    "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage\n\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
)


def _header(code: str, cluster: int, process: int, when: datetime, text: str) -> str:
    # HTCondor writes the submitting machine's local time, with no zone.
    local = when.astimezone() if when.tzinfo else when
    return f"{code} ({cluster:03d}.{process:03d}.000) {local:%Y-%m-%d %H:%M:%S} {text}\n"


def _usage(cpu_seconds: float) -> str:
    seconds = int(cpu_seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"Usr {days} {hours:02d}:{minutes:02d}:{secs:02d}, Sys 0 00:00:00"


def submitted(cluster: int, process: int, when: datetime, host: str = "dctoolkit") -> str:
    return _header(SUBMIT, cluster, process, when, f"Job submitted from host: {_HOST.format(name=host)}") + "...\n"


def executing(cluster: int, process: int, when: datetime, node: str) -> str:
    return _header(EXECUTE, cluster, process, when, f"Job executing on host: {_HOST.format(name=node)}") + "...\n"


def terminated(cluster: int, process: int, when: datetime, exit_code: int, cpu_seconds: float = 0.0) -> str:
    """A job that ended by itself: with its exit status, or (negative `exit_code`) killed by a signal."""
    if exit_code >= 0:
        how = f"\t(1) Normal termination (return value {exit_code})\n"
    else:
        how = f"\t(0) Abnormal termination (signal {-exit_code})\n\t(0) No core file\n"
    usage = _usage(cpu_seconds)
    return (
        _header(TERMINATED, cluster, process, when, "Job terminated.")
        + how
        + f"\t\t{usage}  -  Run Remote Usage\n"
        + "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
        + f"\t\t{usage}  -  Total Remote Usage\n"
        + "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
        + "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
        + "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n...\n"
    )


def aborted(cluster: int, process: int, when: datetime, reason: str) -> str:
    return _header(ABORTED, cluster, process, when, "Job was aborted.") + f"\t{_one_line(reason)}\n...\n"


def held(cluster: int, process: int, when: datetime, reason: str, code: int = 1, subcode: int = 0) -> str:
    """012: `code` and `subcode` are HTCondor's HoldReasonCode and HoldReasonSubCode (1: its owner held it)."""
    head = _header(HELD, cluster, process, when, "Job was held.")
    return head + f"\t{_one_line(reason)}\n\tCode {code} Subcode {subcode}\n...\n"


def released(cluster: int, process: int, when: datetime, reason: str) -> str:
    return _header(RELEASED, cluster, process, when, "Job was released.") + f"\t{_one_line(reason)}\n...\n"


def evicted(cluster: int, process: int, when: datetime) -> str:
    return (
        _header(EVICTED, cluster, process, when, "Job was evicted.")
        + "\t(0) Job was not checkpointed.\n"
        + _USAGE_LINES
        + "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n...\n"
    )


def _one_line(text: str) -> str:
    # An event's text lines must not look like the "..." that ends an event, or like a new event.
    return " ".join(text.split())[:500] or "-"


def ended(
    cluster: int,
    process: int,
    when: datetime,
    state: str,
    exit_code: int | None,
    reason: str,
    cpu: float,
    hold: tuple[int, int] = (1, 0),
) -> str:
    """The event for a job's attempt that ended in `state` (a JobState value); "" when none fits; `hold`:
    a held one's HoldReasonCode and SubCode."""
    if state in ("succeeded", "failed") and exit_code is not None:
        return terminated(cluster, process, when, exit_code, cpu)
    if state in ("failed", "cancelled"):
        return aborted(cluster, process, when, reason or state)
    if state == "held":
        return held(cluster, process, when, reason or "held", *hold)
    if state == "queued":
        return evicted(cluster, process, when)
    return ""


def for_action(verb: str, cluster: int, process: int, when: datetime) -> str:
    """The event an owner's cancel, hold or release writes, for a job no node is running (a running job's
    node writes its own when the kill lands): `aborted`, `held` or `released`."""
    if verb == "cancel":
        return aborted(cluster, process, when, "cancelled by its owner")
    if verb == "hold":
        return held(cluster, process, when, "held by its owner")
    if verb == "release":
        return released(cluster, process, when, "released by its owner")
    raise ValueError(f"no event for {verb!r}")


def append(folder: Path, text: str) -> None:
    """Add events to the log in the submission's `folder`, under an exclusive lock (whole blocks only)."""
    fd = os.open(folder / FILE_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
