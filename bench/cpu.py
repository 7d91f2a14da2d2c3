"""CPU time of the server's processes, read from /proc: what `server_cpu_per_job` adds up.

The server of a real cluster is the scheduler, the database server and
Redis; the node workers are not counted (they run on the nodes).  Each
process's utime + stime is read before and after the throughput run; a
process that appears in between (a database backend opened during the run)
counts from zero, one that is gone by the end is lost (counted in `vanished`).
The nodes' and the plain Celery worker's CPU (the throughput's note) is
read per process tree instead (`tree_seconds`), their jobs included.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _fields(text: str) -> list[str]:
    return text[text.rindex(")") + 2 :].split()  # fields[0] is field 3, the state


def stat_ticks(text: str) -> int:
    """utime + stime, in clock ticks, from the text of /proc/PID/stat (fields 14 and 15).

    The command name (field 2) is in parentheses and may hold spaces or
    parentheses itself, so the fields are counted from the last ')'.
    """
    fields = _fields(text)
    return int(fields[11]) + int(fields[12])


def stat_ticks_with_children(text: str) -> int:
    """`stat_ticks` plus the CPU of the process's children it has waited for (cutime, cstime: fields 16, 17)."""
    fields = _fields(text)
    return sum(int(fields[k]) for k in (11, 12, 13, 14))


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds of each process of `pids` that still exists."""
    seconds = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                seconds[pid] = stat_ticks(f.read()) / CLOCK_TICKS
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return seconds


@dataclass(frozen=True)
class Spent:
    seconds: float
    processes: int
    vanished: int


def spent(before: dict[int, float], after: dict[int, float]) -> Spent:
    """The CPU seconds spent between two readings; a process new in `after` counts from zero."""
    return Spent(
        seconds=sum(value - before.get(pid, 0.0) for pid, value in after.items()),
        processes=len(after),
        vanished=len(set(before) - set(after)),
    )


def tree_seconds(root: int) -> float:
    """CPU seconds of the process `root` and all its descendants, the ones already reaped included.

    Each live process of the tree counts its own time and its reaped
    children's (a child's time moves into its parent's cutime when it is
    waited for, so every process is counted once, alive or gone); a
    process reparented out of the tree before it ended is lost.  What a
    node spends on a job (the worker, its zygote and stubs, bubblewrap and
    the job itself) between two readings is the difference.
    """
    try:
        tree = [root, *(child.pid for child in psutil.Process(root).children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0.0
    ticks = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/stat") as f:
                ticks += stat_ticks_with_children(f.read())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # ended between the listing and the read: its time is in its parent's cutime by now
    return ticks / CLOCK_TICKS
