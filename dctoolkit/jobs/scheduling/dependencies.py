"""When a dependency holds (pure): a parent's end against the kind of wait, and what a person reads.

after_ok    the parent succeeded
after_any   the parent ended, however
after_fail  the parent failed or was cancelled (Slurm's afternotok)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

FINAL = ("succeeded", "failed", "cancelled")


class Outcome(Enum):
    PENDING = "pending"  # the parent has not ended
    MET = "met"
    NEVER = "never"  # the parent ended so that the condition can never hold


def edge_outcome(kind: str, parent_state: str) -> Outcome:
    """What the parent's state means for a dependency of `kind`."""
    if parent_state not in FINAL:
        return Outcome.PENDING
    if kind == "after_any":
        return Outcome.MET
    if kind == "after_ok":
        return Outcome.MET if parent_state == "succeeded" else Outcome.NEVER
    if kind == "after_fail":
        return Outcome.NEVER if parent_state == "succeeded" else Outcome.MET
    raise ValueError(f"unknown dependency kind {kind!r}")


def never_reason(kind: str, parent_id: int, parent_state: str) -> str:
    """Why a job was cancelled: the parent and its state."""
    wanted = {"after_ok": "to succeed", "after_fail": "to fail", "after_any": "to end"}[kind]
    return f"dependency never met: job {parent_id} {parent_state} ({kind}: it waited for job {parent_id} {wanted})"


@dataclass(frozen=True)
class Parent:
    """A parent a waiting job still waits for, as the reason names it."""

    job_id: int
    kind: str
    state: str
    node: str | None = None
    running_seconds: float | None = None


def waiting_reason(parents: list[Parent]) -> str:
    """'waiting for job 12, running on node-2 for 40 min' (and how many others)."""
    if not parents:
        return "waiting: its dependencies are met; it is queued within a second"
    first = parents[0]
    where = f"{first.state}"
    if first.state == "running" and first.node:
        where = f"running on {first.node}" + (
            f" for {_minutes(first.running_seconds)}" if first.running_seconds is not None else ""
        )
    what = "" if first.kind == "after_ok" else f" ({first.kind})"
    others = f", and {len(parents) - 1} other job{'s' if len(parents) > 2 else ''}" if len(parents) > 1 else ""
    return f"waiting for job {first.job_id}{what}, {where}{others}"


def _minutes(seconds: float | None) -> str:
    seconds = max(seconds or 0.0, 0.0)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    return f"{seconds / 3600:.1f} h"
