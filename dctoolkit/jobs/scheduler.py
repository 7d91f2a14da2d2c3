"""From queued jobs, free capacity and usage, pick what runs where.

Pure: plain records in, assignments out.  `dispatch.py` does the I/O.

Policy
- Fair share: the user with the lowest effective usage (decayed past usage
  plus what they already run, divided by their share) is served first; every
  job placed in this pass charges its owner `cpus x PASS_CHARGE_SECONDS`, so
  two users with equal usage alternate.
- One user's jobs keep submission order: while a user's oldest queued job
  cannot be placed, their later jobs wait too.
- Matchmaking: cpus, memory and GPUs against each node's free capacity; best
  fit (the node with the fewest free cpus that still fits), so big holes stay
  big for big jobs.
- No starvation of big jobs: the highest-priority job that fits some node's
  total size but no node's free room *reserves* the node where it fits
  soonest (most free cpus); nothing else is placed there until it starts.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Charge for a job placed in this pass, before it has run a second: enough
# to alternate between users whose usage is equal.
PASS_CHARGE_SECONDS = 1.0


@dataclass(frozen=True)
class QueuedJob:
    id: int
    owner_id: int
    cpus: int = 1
    memory_mb: int = 256
    gpus: int = 0
    node: str = ""
    container: str = ""


@dataclass
class FreeNode:
    """A node that takes jobs now, with what is still free on it (mutated while placing)."""

    name: str
    total_cpus: int
    total_memory_mb: int
    free_cpus: int
    free_memory_mb: int
    free_gpus: list[int] = field(default_factory=list)
    total_gpus: int = 0
    containers: tuple[str, ...] = ()

    def fits_now(self, job: QueuedJob) -> bool:
        return (
            job.cpus <= self.free_cpus
            and job.memory_mb <= self.free_memory_mb
            and job.gpus <= len(self.free_gpus)
            and self.offers(job)
        )

    def fits_ever(self, job: QueuedJob) -> bool:
        return (
            job.cpus <= self.total_cpus
            and job.memory_mb <= self.total_memory_mb
            and job.gpus <= self.total_gpus
            and self.offers(job)
        )

    def offers(self, job: QueuedJob) -> bool:
        return (not job.node or job.node == self.name) and (not job.container or job.container in self.containers)

    def take(self, job: QueuedJob) -> list[int]:
        self.free_cpus -= job.cpus
        self.free_memory_mb -= job.memory_mb
        gpus, self.free_gpus = self.free_gpus[: job.gpus], self.free_gpus[job.gpus :]
        return gpus


@dataclass(frozen=True)
class Assignment:
    job_id: int
    node: str
    gpu_indices: tuple[int, ...] = ()


def pick_assignments(
    queues: Mapping[int, Sequence[QueuedJob]],
    nodes: Sequence[FreeNode],
    usage: Mapping[int, float],
) -> list[Assignment]:
    """Fill free capacity from the per-user queues (each in submission order).

    `usage` maps owner id -> effective usage (lower goes first; missing is 0).
    The nodes' free capacity is consumed as jobs are placed.  A queue is only
    ever indexed, in order, one past the last job placed from it.
    """
    heap = [(usage.get(uid, 0.0), uid) for uid, jobs in queues.items() if has_job(jobs, 0)]
    heapq.heapify(heap)
    position = dict.fromkeys(queues, 0)
    reserved: str | None = None
    assignments: list[Assignment] = []
    # Every job asks for at least one cpu (the parser's minimum), so a node
    # without a free cpu is never a candidate again this pass.
    open_nodes = [n for n in nodes if n.free_cpus > 0]
    while heap and open_nodes:
        charge, uid = heapq.heappop(heap)
        job = queues[uid][position[uid]]
        node = best_fit(job, [n for n in open_nodes if n.name != reserved])
        if node is None:
            # This user's head cannot start now; their later jobs keep waiting
            # behind it.  The first such job in priority order reserves a node.
            if reserved is None:
                reserved = _reservation(job, nodes)
            continue
        assignments.append(Assignment(job.id, node.name, tuple(node.take(job))))
        if node.free_cpus <= 0:
            open_nodes.remove(node)
        position[uid] += 1
        if has_job(queues[uid], position[uid]):
            heapq.heappush(heap, (charge + job.cpus * PASS_CHARGE_SECONDS, uid))
    return assignments


def has_job(queue: Sequence[QueuedJob], index: int) -> bool:
    """Whether `queue` has a job at `index`.  Asked by indexing, not len(), so that a
    queue read lazily from the database (dispatch.LazyQueue) need not know its length."""
    try:
        queue[index]
    except IndexError:
        return False
    return True


def best_fit(job: QueuedJob, nodes: Sequence[FreeNode]) -> FreeNode | None:
    """The node with the fewest free cpus that fits `job` now (ties by name), or None."""
    fitting = [n for n in nodes if n.fits_now(job)]
    return min(fitting, key=lambda n: (n.free_cpus, n.free_memory_mb, n.name), default=None)


def _reservation(job: QueuedJob, nodes: Sequence[FreeNode]) -> str | None:
    candidates = [n for n in nodes if n.fits_ever(job)]
    if not candidates:
        return None
    return max(candidates, key=lambda n: (n.free_cpus, n.free_memory_mb, n.name)).name
