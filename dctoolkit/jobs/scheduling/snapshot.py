"""What one pass sees of the nodes: those taking jobs, with their free capacity (users' usage: accounts.usage)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.db import connection

from dctoolkit.jobs.models import ACTIVE_STATES, HOLDS_SLOT, KILLING, Job
from dctoolkit.jobs.scheduling.classads import NodeAttrs, arch_name
from dctoolkit.jobs.scheduling.matching import gpu_kinds
from dctoolkit.jobs.scheduling.policy import FreeNode
from dctoolkit.lib import fastsql
from dctoolkit.lib.fastsql import Compiled
from dctoolkit.nodes.liveness import is_lost
from dctoolkit.nodes.models import Node, NodeState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capacity:
    """What a node has in use now."""

    cpus: int = 0
    memory_mb: int = 0
    gpus: tuple[int, ...] = ()
    jobs: int = 0


def capacity_in_use(node_ids: list[int] | None = None, with_gpus: bool = True) -> dict[int, Capacity]:
    """node id -> cpus, memory, GPU indices and job count taken by dispatched and running jobs.

    A job cancelled or held while it ran counts too until its kill is done
    (kill_requested set): its process still holds the slot.
    `with_gpus=False` skips reading GPU indices (for nodes that have none).
    The sums are one GROUP BY written out: compiling the ORM's version cost
    more than running it.
    """
    with fastsql.cursor() as cursor:
        cursor.execute(_sums_sql(), ACTIVE_PARAMS)
        sums = cursor.fetchall()
    wanted = set(node_ids) if node_ids is not None else None
    return _capacities([row for row in sums if wanted is None or row[0] in wanted], with_gpus)


def _sums_sql() -> str:
    table = connection.ops.quote_name(Job._meta.db_table)
    marks = ", ".join(["%s"] * len(ACTIVE_STATES))
    kills = ", ".join(["%s"] * len(KILLING))
    # Each side of the OR has its own index (state, node) and (kill_requested, node).
    return (
        f"SELECT node_id, SUM(request_cpus) AS cpus, SUM(request_memory_mb) AS memory_mb, COUNT(*) AS jobs "  # noqa: S608
        f"FROM {table} WHERE (state IN ({marks}) OR kill_requested IN ({kills})) AND node_id IS NOT NULL "
        f"GROUP BY node_id"
    )


ACTIVE_PARAMS = [state.value for state in ACTIVE_STATES] + [kill.value for kill in KILLING]


def _capacities(sums: list[tuple], with_gpus: bool) -> dict[int, Capacity]:
    """node id -> Capacity from (node id, cpus, memory, jobs) sums, with the GPU indices held (one more
    query) when `with_gpus`."""
    gpus: dict[int, list[int]] = defaultdict(list)
    if with_gpus:
        active = Job.objects.filter(HOLDS_SLOT, node__isnull=False, request_gpus__gt=0)
        for node_id, indices in active.values_list("node_id", "gpu_indices"):
            gpus[node_id] += indices or []
    return {
        node_id: Capacity(int(cpus or 0), int(mem or 0), tuple(sorted(gpus[node_id])), count)
        for node_id, cpus, mem, count in sums
    }


def taking_in_use(columns: Compiled, with_gpus: bool | None = None) -> tuple[list[tuple], dict[int, Capacity]]:
    """The rows of `columns` (a query of the nodes taking jobs, `id` first) and what each has in use, in one
    statement (the sums joined to the nodes); the GPU indices held are one more read when `with_gpus`
    (None: when a row's `gpus` column, placed as in `TakingNode`, lists any)."""
    outer = (
        "SELECT t.*, u.cpus, u.memory_mb, u.jobs FROM ({inner}) t "  # noqa: S608 (no user input)
        f"LEFT JOIN ({_sums_sql()}) u ON u.node_id = t.id"
    )
    rows = columns.values_within(outer, ACTIVE_PARAMS)
    nodes = [row[:-3] for row in rows]
    sums = [(row[0], *row[-3:]) for row in rows if row[-1]]
    if with_gpus is None:
        at = TakingNode._fields.index("gpus")
        with_gpus = any(node[at] for node in nodes)
    return nodes, _capacities(sums, with_gpus)


class TakingNode(NamedTuple):
    """The columns of a node row that a pass reads (a model instance of every column cost a pass more than
    its planning); the same names as `Node`'s, so `free_node` and `node_attrs` take either."""

    id: int
    name: str
    slots: int
    memory_total_mb: int
    disk_free_mb: int
    gpus: list
    containers: list
    labels: list
    arch: str
    policy: str
    owner_present: bool
    last_heartbeat: datetime | None


def free_node(node: Node | TakingNode, used: Capacity) -> FreeNode:
    """What is left on `node` while `used` is taken (negative when a node shrank under its jobs)."""
    all_gpus = [g["index"] for g in node.gpus]
    return FreeNode(
        name=node.name,
        total_cpus=node.slots,
        total_memory_mb=node.memory_total_mb,
        free_cpus=node.slots - used.cpus,
        free_memory_mb=node.memory_total_mb - used.memory_mb,
        free_gpus=[i for i in all_gpus if i not in used.gpus],
        total_gpus=len(all_gpus),
        containers=tuple(node.containers),
        labels=frozenset(node.labels),
        gpu_kinds=gpu_kinds(node.gpus),
        free_disk_mb=node.disk_free_mb or None,
        # A desktop whose owner is using it (DCT_NODE_POLICY=desktop) takes no new job.
        lends=not (node.policy == "desktop" and node.owner_present),
    )


def node_attrs(node: Node | TakingNode) -> NodeAttrs:
    """The node as ClassAd requirements and rank see it (its totals, and its free scratch space)."""
    return NodeAttrs(
        name=node.name,
        cpus=node.slots,
        memory_mb=node.memory_total_mb,
        disk_kb=node.disk_free_mb * 1024,
        gpus=len(node.gpus),
        arch=arch_name(node.arch),
        labels=tuple(node.labels),
    )


@dataclass(frozen=True)
class NodesNow:
    """The nodes taking jobs, as one pass sees them."""

    free: dict[str, tuple[TakingNode, FreeNode]]  # name -> node and its free capacity (heard from lately)
    used: dict[int, Capacity]  # what `free` was worked out from
    taking: frozenset[int]  # ids of every node marked as taking jobs, heard from lately or not
    with_gpus: bool

    def ads(self) -> list[NodeAttrs]:
        """The nodes of `free` as their ClassAds show them."""
        return [node_attrs(node) for node, _ in self.free.values()]


def free_nodes(now: datetime) -> NodesNow:
    """Nodes that take jobs now, with their free capacity."""
    rows, used = taking_in_use(TAKING_NODES)
    nodes = [TakingNode(*row) for row in rows]
    with_gpus = any(n.gpus for n in nodes)
    free = {}
    for node in nodes:
        if not is_lost(node.last_heartbeat, now, settings.DCT_NODE_TIMEOUT_SECONDS):
            free[node.name] = (node, free_node(node, used.get(node.id, Capacity())))
    return NodesNow(free, used, frozenset(n.id for n in nodes), with_gpus)


# The queries every pass makes whose filters never change, compiled once.
TAKING_NODES = Compiled(
    lambda: Node.objects.filter(state=NodeState.ONLINE, drained=False, accepts_jobs=True).values_list(
        *TakingNode._fields
    )
)


TAKING_NODE_IDS = Compiled(
    lambda: Node.objects.filter(state=NodeState.ONLINE, drained=False, accepts_jobs=True).values_list("id")
)
