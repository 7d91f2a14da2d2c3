"""Node liveness and the state shown to people: pure, `now` passed in."""

from __future__ import annotations

from datetime import datetime, timedelta


def is_lost(last_heartbeat: datetime | None, now: datetime, timeout_seconds: float) -> bool:
    """True when a node has been silent for longer than the timeout."""
    return last_heartbeat is None or now - last_heartbeat > timedelta(seconds=timeout_seconds)


def display_state(*, online: bool, drained: bool, accepts_jobs: bool, free_cpus: int, running_jobs: int) -> str:
    """available / busy / draining / drained / refusing / offline."""
    if not online:
        return "offline"
    if drained:
        return "draining" if running_jobs else "drained"
    if not accepts_jobs:
        return "refusing"
    return "available" if free_cpus > 0 else "busy"
