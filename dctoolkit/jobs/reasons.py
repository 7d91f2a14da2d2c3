"""Why a job waits, in words a newcomer understands.  Pure: facts in, sentence out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .units import format_mb


@dataclass(frozen=True)
class NodeView:
    """A known node, as the reason-giver sees it."""

    name: str
    online: bool
    takes_jobs: bool  # online, not drained, fences jobs if it must
    total_cpus: int
    total_memory_mb: int
    total_gpus: int
    free_cpus: int
    free_memory_mb: int
    free_gpus: int
    drained: bool = False
    containers: tuple[str, ...] = ()


@dataclass(frozen=True)
class WaitFacts:
    nodes: tuple[NodeView, ...]
    ahead_own: int = 0  # earlier queued jobs of the same user
    ahead_others: int = 0  # queued jobs of users with lower usage
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    state: str
    cpus: int
    memory_mb: int
    gpus: int
    node: str = ""
    container: str = ""
    previous: str = ""  # the reason left by the last attempt (node lost, ...)


def _fits(r: Request, n: NodeView, free: bool) -> bool:
    cpus, mem, gpus = (
        (n.free_cpus, n.free_memory_mb, n.free_gpus)
        if free
        else (
            n.total_cpus,
            n.total_memory_mb,
            n.total_gpus,
        )
    )
    return r.cpus <= cpus and r.memory_mb <= mem and r.gpus <= gpus and (not r.container or r.container in n.containers)


def _shortfall(r: Request, n: NodeView) -> str:
    """What the request needs that the node lacks now."""
    if r.cpus > n.free_cpus:
        return f"needs {r.cpus} cpus, {n.name} has {n.free_cpus} free"
    if r.memory_mb > n.free_memory_mb:
        return f"needs {format_mb(r.memory_mb)} memory, {n.name} has {format_mb(n.free_memory_mb)} free"
    return f"needs {r.gpus} GPUs, {n.name} has {n.free_gpus} free"


# Why an online, undrained node takes no jobs (agent.NodeIdentity.accepts_jobs).
REFUSING = "cannot fence jobs (sandbox off) and DCT_REQUIRE_SANDBOX=1 keeps it from running any"


def explain_wait(r: Request, facts: WaitFacts) -> str:
    """One sentence: why this queued or held job is not running yet."""
    prefix = f"requeued ({r.previous}); " if r.previous and r.state == "queued" else ""
    return prefix + _why(r, facts)


def _why(r: Request, facts: WaitFacts) -> str:
    if r.state == "held":
        return "held by its owner; release it to queue it again"
    nodes = [n for n in facts.nodes if not r.node or n.name == r.node]
    if r.node and not nodes:
        return f"pinned to {r.node}, which has never connected; start it or submit without client/node"
    if r.node:
        n = nodes[0]
        if not n.online:
            return f"pinned to {n.name}, which is offline"
        if n.drained:
            return f"pinned to {n.name}, which is drained; it takes jobs again after './dct resume {n.name}'"
        if not n.takes_jobs:
            return f"pinned to {n.name}, which {REFUSING}"
    usable = [n for n in nodes if n.takes_jobs]
    if not usable:
        if any(n.online and not n.drained for n in nodes):
            return f"no online node takes jobs: each online one {REFUSING}"
        return "no node is online to run it; start one with 'python worker_entry.py --node NAME'"
    if not any(_fits(r, n, free=False) for n in usable):
        return _never_fits(r, usable)
    if facts.ahead_own:
        return f"behind {facts.ahead_own} earlier job{'s' if facts.ahead_own != 1 else ''} of the same user"
    if facts.ahead_others:
        return (
            f"behind {facts.ahead_others} job{'s' if facts.ahead_others != 1 else ''} "
            "of users with lower usage (fair share)"
        )
    if any(_fits(r, n, free=True) for n in usable):
        return "starting: a node has room"
    return _busy(r, usable)


def _never_fits(r: Request, usable: list[NodeView]) -> str:
    if r.container and not any(r.container in n.containers for n in usable):
        return f"needs container {r.container}, which no online node offers"
    biggest = max(usable, key=lambda n: (n.total_cpus, n.total_memory_mb, n.total_gpus))
    for asked, has, what in (
        (r.cpus, max(n.total_cpus for n in usable), "cpus"),
        (r.gpus, max(n.total_gpus for n in usable), "GPUs"),
    ):
        if asked > has:
            return f"needs {asked} {what}, but the largest online node has {has}; no node can run it"
    most = max(n.total_memory_mb for n in usable)
    if r.memory_mb > most:
        return f"needs {format_mb(r.memory_mb)} memory, the largest online node has {format_mb(most)}"
    return f"no single online node has all it asks for (largest: {biggest.name})"


def _busy(r: Request, usable: list[NodeView]) -> str:
    best = max(usable, key=lambda n: (n.free_cpus, n.free_memory_mb, n.free_gpus))
    if best.free_cpus <= 0:
        if len(usable) == 1:
            return f"waiting for a free cpu: {best.name}, the only node, is busy"
        return f"waiting for a free cpu: all {len(usable)} nodes are busy"
    reason = _shortfall(r, best)
    # Suggest a smaller request when it would start now.
    if r.memory_mb > best.free_memory_mb and r.cpus <= best.free_cpus and r.gpus <= best.free_gpus:
        reason += f"; it would start now on {best.name} with request_memory = {best.free_memory_mb}MB"
    elif r.cpus > best.free_cpus and r.memory_mb <= best.free_memory_mb and r.gpus <= best.free_gpus:
        reason += f"; it would start now on {best.name} with request_cpus = {best.free_cpus}"
    return reason
