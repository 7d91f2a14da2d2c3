"""Why a job waits, in words a newcomer understands.  Pure: facts in, sentence out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dctoolkit.jobs.gpuuse import IdleHolder, idle_holders_note
from dctoolkit.jobs.scheduling.classads import NodeAttrs, closest_miss, holds
from dctoolkit.jobs.scheduling.matching import ANY, AdAsk, GpuKind, Machine, Wants, lacking
from dctoolkit.lib.units import format_mb


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
    owner_present: bool = False  # a desktop node whose owner is using it: it takes no new job
    idle_minutes: float = 0.0  # such a desktop lends once its owner has been idle this long
    containers: tuple[str, ...] = ()
    labels: frozenset[str] = frozenset()
    gpu_kinds: Mapping[int, GpuKind] = field(default_factory=dict)  # index -> kind of every GPU
    free_gpu_indices: tuple[int, ...] = ()
    ad: NodeAttrs | None = None  # as ClassAd requirements see it (None: not known, meets none)
    free_disk_mb: int | None = None  # free scratch space (None: not known)

    def machine(self) -> Machine:
        return Machine(self.name, self.labels, self.gpu_kinds or {i: GpuKind() for i in range(self.total_gpus)})


@dataclass(frozen=True)
class WaitFacts:
    nodes: tuple[NodeView, ...]
    ahead_own: int = 0  # earlier queued jobs of the same user
    ahead_others: int = 0  # queued jobs of other users served first (fairshare: lower usage, ties to lower id)
    cap: str = ""  # the cap that holds this job back (`accounts.limits.held_back`), "" when none does
    idle_gpus: tuple[IdleHolder, ...] = ()  # running jobs holding GPUs idle (gpuuse.is_idle)
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
    wants: Wants = ANY  # labels, node choice, GPU kind, ClassAd requirements, request_disk

    def ask(self) -> AdAsk:
        return AdAsk(self.wants.requirements, "", self.cpus, self.memory_mb, self.wants.disk_mb, self.gpus)


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
    if r.wants.picky_gpus and r.gpus:
        gpus = len(r.wants.matching_gpus(n.free_gpu_indices if free else n.gpu_kinds, n.gpu_kinds))
    if free and r.wants.disk_mb and n.free_disk_mb is not None and r.wants.disk_mb > n.free_disk_mb:
        return False
    return r.cpus <= cpus and r.memory_mb <= mem and r.gpus <= gpus and (not r.container or r.container in n.containers)


def _shortfall(r: Request, n: NodeView) -> str:
    """What the request needs that the node lacks now."""
    if r.cpus > n.free_cpus:
        return f"needs {r.cpus} cpus, {n.name} has {n.free_cpus} free"
    if r.memory_mb > n.free_memory_mb:
        return f"needs {format_mb(r.memory_mb)} memory, {n.name} has {format_mb(n.free_memory_mb)} free"
    if r.wants.disk_mb and n.free_disk_mb is not None and r.wants.disk_mb > n.free_disk_mb:
        return f"needs {format_mb(r.wants.disk_mb)} of free scratch space, {n.name} has {format_mb(n.free_disk_mb)}"
    if r.wants.picky_gpus:
        free = len(r.wants.matching_gpus(n.free_gpu_indices, n.gpu_kinds))
        return f"needs {r.wants.describe_gpu(r.gpus)}, {n.name} has {free} free"
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
    if facts.cap:
        return facts.cap
    nodes = [n for n in facts.nodes if not r.node or n.name == r.node]
    if r.node and not nodes:
        return f"pinned to {r.node}, which has never connected; start it or submit without client/node"
    pinned = _pinned_elsewhere(nodes[0]) if r.node else ""
    if pinned:
        return pinned
    usable = [n for n in nodes if n.takes_jobs]
    if not usable:
        if any(n.online and not n.drained for n in nodes):
            return f"no online node takes jobs: each online one {REFUSING}"
        return "no node is online to run it; start one with 'python worker_entry.py --node NAME'"
    missing, usable = _chosen(r, nodes, usable)
    if missing:
        return missing
    if not any(_fits(r, n, free=False) for n in usable):
        return _never_fits(r, usable)
    if facts.ahead_own:
        return f"behind {facts.ahead_own} earlier job{'s' if facts.ahead_own != 1 else ''} of the same user"
    if facts.ahead_others:
        return (
            f"behind {facts.ahead_others} job{'s' if facts.ahead_others != 1 else ''} "
            "of users with lower usage (fair share)"
        )
    return _room(r, usable) + _idle_gpus_note(r, usable, facts)


def _free_gpus(r: Request, n: NodeView) -> int:
    return len(r.wants.matching_gpus(n.free_gpu_indices, n.gpu_kinds)) if r.wants.picky_gpus else n.free_gpus


def _idle_gpus_note(r: Request, usable: list[NodeView], facts: WaitFacts) -> str:
    """For a GPU job that waits for GPUs: the jobs holding GPUs idle on the nodes it could run on."""
    if not r.gpus or not facts.idle_gpus or any(_free_gpus(r, n) >= r.gpus for n in usable):
        return ""
    return idle_holders_note(facts.idle_gpus, (n.name for n in usable))


def _pinned_elsewhere(n: NodeView) -> str:
    """Why the node a job is pinned to takes no jobs now ("" when it does)."""
    if not n.online:
        return f"pinned to {n.name}, which is offline"
    if n.drained:
        return f"pinned to {n.name}, which is drained; it takes jobs again after './dct resume {n.name}'"
    if not n.takes_jobs:
        return f"pinned to {n.name}, which {REFUSING}"
    if n.owner_present:
        return f"pinned to {n.name}, {_desktop_in_use(n)}"
    return ""


def _room(r: Request, usable: list[NodeView]) -> str:
    """A job that fits some usable node: starting, kept off desktops whose owners are back, or busy nodes."""
    if any(_fits(r, n, free=True) for n in usable if not n.owner_present):
        return "starting: a node has room"
    occupied = sorted(n.name for n in usable if n.owner_present and _fits(r, n, free=True))
    if occupied:
        if len(occupied) == 1:
            what = f"the node with room, {occupied[0]}, is a desktop whose owner is using it"
        else:
            what = f"the nodes with room ({', '.join(occupied)}) are desktops whose owners are using them"
        return f"{what}; it starts when an owner is idle again or another node frees up"
    return _busy(r, [n for n in usable if not n.owner_present] or usable)


def _desktop_in_use(n: NodeView) -> str:
    minutes = f"{n.idle_minutes:g} minute{'s' if n.idle_minutes != 1 else ''}"
    return f"a desktop whose owner is using it; it takes jobs once its owner has been idle {minutes}"


def _chosen(r: Request, nodes: list[NodeView], usable: list[NodeView]) -> tuple[str, list[NodeView]]:
    """The nodes taking jobs that the job's node choice, labels, GPU kind and requirements allow; or, when
    there are none, why ("" and the nodes when there are)."""
    if r.wants is ANY:
        return "", usable
    missing = _choice_missing(r, nodes, usable)
    if missing:
        return missing, []
    usable = [n for n in usable if r.wants.node_ok(n.name, n.labels)]
    if r.wants.requirements:
        meeting = _meeting(r, usable)
        if not meeting:
            return _requirements_missing(r, nodes, usable), []
        usable = meeting
    return "", usable


def _choice_missing(r: Request, nodes: list[NodeView], usable: list[NodeView]) -> str:
    """What the job's node choice, labels or GPU kind finds on no node taking jobs ("" when one has it)."""
    lack = lacking(r.wants, r.gpus, [n.machine() for n in usable])
    if lack is None:
        return ""
    able = sorted(n.name for n in nodes if lacking(r.wants, r.gpus, [n.machine()]) is None)
    if not able:
        return lack.message
    return (
        f"only {', '.join(able)} {'has' if len(able) == 1 else 'have'} what it asks for "
        f"(node, labels, GPU kind), and {'it takes' if len(able) == 1 else 'they take'} no jobs now "
        "(offline or drained)"
    )


def _meeting(r: Request, nodes: list[NodeView]) -> list[NodeView]:
    """Those of `nodes` the job's ClassAd requirements hold on."""
    ask = r.ask()
    return [n for n in nodes if n.ad is not None and holds(r.wants.requirements, n.ad, ask)]


def _requirements_missing(r: Request, nodes: list[NodeView], usable: list[NodeView]) -> str:
    able = sorted(n.name for n in _meeting(r, nodes))
    if able:
        return (
            f"its requirements hold only on {', '.join(able)}, which {'takes' if len(able) == 1 else 'take'} "
            "no jobs now (offline or drained)"
        )
    miss = closest_miss(r.wants.requirements, [n.ad for n in usable if n.ad is not None], r.ask())
    return f"requirements: {miss.message()}" if miss else "its requirements hold on no node taking jobs now"


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
