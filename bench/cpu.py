"""CPU time of the server's processes, read from /proc: what `server_cpu_per_job` adds up.

The server of a real cluster is the scheduler, the database server and
Redis; the node workers are not counted (they run on the nodes).  Each
process's utime + stime is read before and after the throughput run; a
process that appears in between (a database backend opened during the run)
counts from zero, one that is gone by the end is lost (counted in `vanished`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stat_ticks(text: str) -> int:
    """utime + stime, in clock ticks, from the text of /proc/PID/stat (fields 14 and 15).

    The command name (field 2) is in parentheses and may hold spaces or
    parentheses itself, so the fields are counted from the last ')'.
    """
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3, the state
    return int(fields[11]) + int(fields[12])


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
