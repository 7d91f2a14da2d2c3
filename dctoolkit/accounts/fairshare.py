"""Decayed usage and fair-share priority: pure arithmetic, time passed in."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime


def decayed(usage: float, since: datetime | None, now: datetime, halflife_seconds: float) -> float:
    """`usage` recorded at `since`, as it stands at `now` after halving every half-life."""
    if since is None or usage <= 0:
        return max(usage, 0.0)
    elapsed = max((now - since).total_seconds(), 0.0)
    return usage * math.pow(0.5, elapsed / halflife_seconds)


def charge(usage: float, since: datetime | None, now: datetime, halflife_seconds: float, cpu_seconds: float) -> float:
    """New usage at `now` after adding `cpu_seconds` (cpus x wall) to the decayed balance."""
    return decayed(usage, since, now, halflife_seconds) + max(cpu_seconds, 0.0)


@dataclass(frozen=True)
class UserUsage:
    """One user's standing: decayed past usage plus what is running now, scaled by share."""

    user_id: int
    decayed_usage: float
    running_charge: float
    share: float = 1.0

    @property
    def effective(self) -> float:
        return (self.decayed_usage + self.running_charge) / max(self.share, 1e-9)


def running_charge(jobs: Iterable[tuple[int, datetime | None]], now: datetime) -> float:
    """cpus x seconds so far, for (cpus, started_at) of running jobs."""
    return sum(cpus * max((now - started).total_seconds(), 0.0) for cpus, started in jobs if started)


def priority_order(usages: Mapping[int, UserUsage]) -> list[int]:
    """User ids, first to be served first: lowest effective usage, ties by id (stable)."""
    return sorted(usages, key=lambda uid: (usages[uid].effective, uid))
