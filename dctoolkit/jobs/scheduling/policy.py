"""From queued jobs, free capacity and usage, pick what runs where.

Pure: plain records in, assignments out.  `snapshot`, `queues`, `accounts.usage` and `dispatch` do the I/O.

Policy
- Fair share (`accounts.fairshare`, the one copy of the rule): accounting
  groups take turns by their usage over their share first; within a group
  (a user in none is a group of one), the user with
  the lowest effective usage (decayed past usage plus what they already run,
  divided by their share; ties to the lower user id) is served first; every
  job placed charges its owner `rate x PLACED_CHARGE_SECONDS` (the rate: what
  it holds, weighted by `billing`), so two users with equal usage alternate.
- One user's jobs are tried in submission order; one that cannot be placed
  now waits (the first such job reserves a node, below) and their later jobs
  that fit elsewhere still start (at most `PASSED_OVER` passed over a pass).
- Matchmaking: cpus, memory and GPUs against each node's free capacity, and
  the job's machine choice (`matching.Wants`: labels, nodes, avoid, GPU kind;
  only GPUs of the kind asked are handed out), its `request_disk` against the
  node's free scratch space, and its ClassAd `requirements` (the nodes they
  hold on come worked out, `verdicts`: this module evaluates nothing); its
  `rank` first (highest), then best fit (the node with the fewest free cpus
  that still fits), so big holes stay big for big jobs.
- Caps (`accounts.limits`): a user whose next job would go over their cap
  of running jobs or GPUs (`rooms`) takes no more turns this pass; a job
  that would go over its accounting group's total caps (`group_rooms`: all
  the jobs charging the group together) waits, passed over as one that
  does not fit, and reserves no node.
- Desktops: a desktop node whose owner is using it (`lends` False) gets no
  new job, and no reservation.
- No starvation of big jobs: the highest-priority job that fits some node's
  total size but no node's free room *reserves* the node where it fits
  soonest (most free cpus); nothing else is placed there until it starts.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from dctoolkit.accounts.fairshare import CPU_ONLY, Billing, Team, Turns
from dctoolkit.accounts.limits import Room
from dctoolkit.jobs.scheduling.matching import ANY, AdAsk, AdVerdict, GpuKind, Wants, ad_ask

# No requirements hold anywhere: what a job's ask missing from `verdicts` gets (it waits; never runs unchecked).
NOWHERE = AdVerdict(frozenset(), {})


@dataclass(frozen=True)
class QueuedJob:
    id: int
    owner_id: int
    cpus: int = 1
    memory_mb: int = 256
    gpus: int = 0
    node: str = ""
    container: str = ""
    wants: Wants = ANY
    priority: int = 0  # the owner's own order: higher first (the queues come in that order)
    group_id: int | None = None  # the accounting group it charges (its total caps: `group_rooms`)

    @property
    def ad(self) -> AdAsk | None:
        """What its ClassAd requirements and rank are evaluated with; None when it has neither."""
        return ad_ask(self.wants, self.cpus, self.memory_mb, self.gpus)


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
    labels: frozenset[str] = frozenset()
    gpu_kinds: Mapping[int, GpuKind] = field(default_factory=dict)  # index -> kind, for every GPU it has
    free_disk_mb: int | None = None  # free scratch space (None: not known, so any request_disk fits)
    lends: bool = True  # False: a desktop whose owner is using it, which takes no new job

    def fits_now(self, job: QueuedJob) -> bool:
        return (
            self.lends
            and job.cpus <= self.free_cpus
            and job.memory_mb <= self.free_memory_mb
            and job.gpus <= len(self.free_gpus)
            and self.has_disk(job)
            and self.offers(job)
            and (not job.gpus or job.gpus <= len(job.wants.matching_gpus(self.free_gpus, self.gpu_kinds)))
        )

    def fits_ever(self, job: QueuedJob) -> bool:
        return (
            job.cpus <= self.total_cpus
            and job.memory_mb <= self.total_memory_mb
            and job.gpus <= self.total_gpus
            and self.has_disk(job)
            and self.offers(job)
            and (not job.wants.picky_gpus or job.gpus <= len(job.wants.matching_gpus(self.gpu_kinds, self.gpu_kinds)))
        )

    def has_disk(self, job: QueuedJob) -> bool:
        return not job.wants.disk_mb or self.free_disk_mb is None or job.wants.disk_mb <= self.free_disk_mb

    def offers(self, job: QueuedJob) -> bool:
        return (
            (not job.node or job.node == self.name)
            and (not job.container or job.container in self.containers)
            and (job.wants is ANY or not job.wants.picks_nodes or job.wants.node_ok(self.name, self.labels))
        )

    def take(self, job: QueuedJob) -> list[int]:
        """Take what `job` asks; the GPU indices it gets (of the kind it asks, lowest first)."""
        self.free_cpus -= job.cpus
        self.free_memory_mb -= job.memory_mb
        if self.free_disk_mb is not None:
            self.free_disk_mb -= job.wants.disk_mb
        gpus = job.wants.matching_gpus(self.free_gpus, self.gpu_kinds)[: job.gpus]
        self.free_gpus = [i for i in self.free_gpus if i not in gpus]
        return gpus


@dataclass(frozen=True)
class Assignment:
    job_id: int
    node: str
    gpu_indices: tuple[int, ...] = ()
    cpus: int = 1  # the job's request_cpus: its run message says it, so that the node pins it before its start


@dataclass(frozen=True)
class Picks:
    """What a pass places; or, when `wants_more` is set, nothing yet: the planner ran out of these
    users' known queued jobs while they may have more.  Read more of theirs and ask again."""

    assignments: list[Assignment]
    wants_more: frozenset[int] = frozenset()


def pick_assignments(
    queues: Mapping[int, Sequence[QueuedJob]],
    nodes: Sequence[FreeNode],
    usage: Mapping[int, float],
    more: Collection[int] = (),
    verdicts: Mapping[AdAsk, AdVerdict] | None = None,
    billing: Billing = CPU_ONLY,
    rooms: Mapping[int, Room] | None = None,
    teams: Mapping[int, Team] | None = None,
    group_rooms: Mapping[int, Room] | None = None,
) -> Picks:
    """Fill free capacity from the per-user queues (each the user's oldest jobs, in submission order).

    `usage` maps owner id -> effective usage (missing is 0); whose turn it is
    comes from `fairshare.Turns`.  `more` names the users who may have more
    queued jobs than `queues` holds: when a user's known jobs run out before
    the nodes are full, the answer is `Picks([], wants_more={that user})`.
    `nodes` are not changed (the planner places on copies), so asking again
    starts from the same free capacity.  `verdicts` holds, for the AdAsk of
    every job with ClassAd requirements or rank, the nodes they hold on and
    the rank of each (`classads.verdicts`).  `billing` weighs what each job
    placed charges (DCT_BILLING); `rooms`, what users with a cap may still
    start (`accounts.limits.room`; not changed: the planner takes from copies);
    `teams`, the accounting group each user in one takes turns in (`fairshare.Turns`: groups first);
    `group_rooms`, what the jobs charging a group with total caps may still start (by group id; not changed).
    """
    left = {uid: replace(r) for uid, r in (rooms or {}).items()}
    group_left = {gid: replace(r) for gid, r in (group_rooms or {}).items()}
    verdicts = verdicts or {}
    turns = Turns({uid: usage.get(uid, 0.0) for uid, jobs in queues.items() if jobs}, teams)
    position = dict.fromkeys(queues, 0)
    nodes = [replace(n, free_gpus=list(n.free_gpus)) for n in nodes]
    reserved: str | None = None
    assignments: list[Assignment] = []
    # Every job asks for at least one cpu (the parser's minimum), so a node
    # without a free cpu is never a candidate again this pass.
    open_nodes = OpenNodes([n for n in nodes if n.free_cpus > 0 and n.lends])
    passed = dict.fromkeys(queues, 0)
    while turns and open_nodes:
        uid, charged = turns.next()
        job = queues[uid][position[uid]]
        cap = left[uid].blocks(job.gpus) if uid in left else ""
        if cap == "running_jobs":
            continue  # held back by a cap: none of this user's jobs start this pass (the reason names the cap)
        pool = group_left.get(job.group_id) if job.group_id is not None else None
        if pool is not None and not cap:
            cap = pool.blocks(job.gpus)  # the user's later jobs may charge another group: they are still tried
        verdict = _verdict(job, verdicts)
        node = None if cap else open_nodes.best_fit(job, reserved, verdict)
        rate = 0.0
        if node is None:
            # It cannot start now (or its GPUs would pass its owner's cap): it waits, the first such job in
            # priority order reserving a node, and its owner's later jobs may still start elsewhere.
            if reserved is None and not cap:
                reserved = _reservation(job, nodes, verdict)
            passed[uid] += 1
            if passed[uid] >= PASSED_OVER:
                continue  # enough of this user's jobs looked at for one pass
        else:
            assignments.append(Assignment(job.id, node.name, tuple(open_nodes.take(node, job)), job.cpus))
            if uid in left:
                left[uid].take(job.gpus)
            if pool is not None:
                pool.take(job.gpus)
            rate = billing.rate(job.cpus, job.gpus, job.memory_mb)
        position[uid] += 1
        if position[uid] < len(queues[uid]):
            turns.again(uid, charged, rate)
            continue
        turns.leave(rate)
        if uid in more and open_nodes:
            return Picks([], frozenset([uid]))
    return Picks(assignments)


class OpenNodes:
    """The nodes with a free cpu during one plan, kept in best-fit order as they fill.

    `best_fit` over every node is a scan per placement (a pass over 1,000
    nodes placing 2,000 jobs: two million checks).  A plain job (no GPUs, no
    pinned node, container, labels, node list or ClassAd requirements) fits
    a node by its free cpus and memory (and scratch space) alone, so for it
    the nodes sorted by (free cpus, free memory, name) give the best fit as
    the first one at or after (its cpus, its memory) that has the memory
    and disk: the same node `best_fit` would choose.  Any other job goes
    through `best_fit`.
    """

    def __init__(self, nodes: Sequence[FreeNode]) -> None:
        self._nodes = {n.name: n for n in nodes}
        self._order = sorted(_fit_key(n) for n in nodes)

    def __bool__(self) -> bool:
        return bool(self._nodes)

    def best_fit(self, job: QueuedJob, reserved: str | None, verdict: AdVerdict | None) -> FreeNode | None:
        if verdict is not None or job.gpus or job.node or job.container or job.wants.picks_nodes:
            return best_fit(job, [n for n in self._nodes.values() if n.name != reserved], verdict)
        order = self._order
        for i in range(bisect_left(order, (job.cpus, job.memory_mb, "")), len(order)):
            _, memory_mb, name = order[i]
            if memory_mb >= job.memory_mb and name != reserved and (node := self._nodes[name]).has_disk(job):
                return node
        return None

    def take(self, node: FreeNode, job: QueuedJob) -> list[int]:
        """`node.take(job)`, keeping the order (and dropping the node once it has no free cpu)."""
        order = self._order
        del order[bisect_left(order, _fit_key(node))]
        gpus = node.take(job)
        if node.free_cpus > 0:
            insort(order, _fit_key(node))
        else:
            del self._nodes[node.name]
        return gpus


def _fit_key(node: FreeNode) -> tuple[int, int, str]:
    return (node.free_cpus, node.free_memory_mb, node.name)


# A user's jobs that cannot start now are passed over (their later ones tried) at most this many a pass:
# free room only shrinks within a pass, and a long queue of jobs too big for it is not read to its end.
PASSED_OVER = 16


def _verdict(job: QueuedJob, verdicts: Mapping[AdAsk, AdVerdict]) -> AdVerdict | None:
    ask = job.ad
    return None if ask is None else verdicts.get(ask, NOWHERE)


def best_fit(job: QueuedJob, nodes: Sequence[FreeNode], verdict: AdVerdict | None = None) -> FreeNode | None:
    """The node that fits `job` now with the highest rank, then the fewest free cpus (ties by name), or None.

    `verdict`: where the job's ClassAd requirements hold and its rank of each (None: it has neither)."""
    if verdict is None:
        fitting = [n for n in nodes if n.fits_now(job)]
        return min(fitting, key=lambda n: (n.free_cpus, n.free_memory_mb, n.name), default=None)
    eligible, ranks = verdict.eligible, verdict.ranks
    fitting = [n for n in nodes if n.name in eligible and n.fits_now(job)]
    return min(fitting, key=lambda n: (-ranks.get(n.name, 0.0), n.free_cpus, n.free_memory_mb, n.name), default=None)


def _reservation(job: QueuedJob, nodes: Sequence[FreeNode], verdict: AdVerdict | None) -> str | None:
    candidates = [n for n in nodes if n.lends and n.fits_ever(job) and (verdict is None or n.name in verdict.eligible)]
    if not candidates:
        return None
    return max(candidates, key=lambda n: (n.free_cpus, n.free_memory_mb, n.name)).name
