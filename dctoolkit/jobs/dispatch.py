"""The scheduler's I/O: reads the database, claims jobs, sends Celery tasks.

Each function is one step that returns how much work it did; the loop in
`management/commands/scheduler.py` only repeats them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, OuterRef

from dctoolkit.accounts.fairshare import decayed, running_charge
from dctoolkit.accounts.models import Account
from dctoolkit.celery import app, settle_conf
from dctoolkit.fastsql import Compiled, CompiledIn
from dctoolkit.nodes.liveness import is_lost
from dctoolkit.nodes.models import Node, NodeState

from . import transitions
from .models import ACTIVE_STATES, Job, JobState, SchedulerLock
from .scheduler import Assignment, FreeNode, QueuedJob, pick_assignments

log = logging.getLogger(__name__)

RUN_TASK = "dctoolkit.run_job"
WAKE_KEY = "dct:scheduler:wake"
# A dispatched job that has not started after this long has lost its message
# (Redis restarted empty, a worker died holding it): send it again.  The
# attempt check on the node makes a duplicate harmless.
RESEND_AFTER_SECONDS = 15
# At most this many of each user's queued jobs are read per pass: a pass can
# place at most one job per free cpu, so reading more is wasted work.
MAX_HEADS_PER_USER = 500


@dataclass(frozen=True)
class Capacity:
    """What a node has in use now."""

    cpus: int = 0
    memory_mb: int = 0
    gpus: tuple[int, ...] = ()
    jobs: int = 0


def capacity_in_use(node_ids: list[int] | None = None, with_gpus: bool = True) -> dict[int, Capacity]:
    """node id -> cpus, memory, GPU indices and job count taken by dispatched and running jobs.

    `with_gpus=False` skips reading GPU indices (for nodes that have none).
    The sums are one GROUP BY written out: a pass reads them twice, and
    compiling the ORM's version cost more than running it.
    """
    table = connection.ops.quote_name(Job._meta.db_table)
    marks = ", ".join(["%s"] * len(ACTIVE_STATES))
    sql = (
        f"SELECT node_id, SUM(request_cpus), SUM(request_memory_mb), COUNT(*) FROM {table} "  # noqa: S608
        f"WHERE state IN ({marks}) AND node_id IS NOT NULL GROUP BY node_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [state.value for state in ACTIVE_STATES])
        sums = cursor.fetchall()
    wanted = set(node_ids) if node_ids is not None else None
    gpus: dict[int, list[int]] = defaultdict(list)
    if with_gpus:
        active = Job.objects.filter(state__in=ACTIVE_STATES, node__isnull=False, request_gpus__gt=0)
        for node_id, indices in active.values_list("node_id", "gpu_indices"):
            gpus[node_id] += indices or []
    return {
        node_id: Capacity(int(cpus or 0), int(mem or 0), tuple(sorted(gpus[node_id])), count)
        for node_id, cpus, mem, count in sums
        if wanted is None or node_id in wanted
    }


def free_node(node: Node, used: Capacity) -> FreeNode:
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
    )


@dataclass(frozen=True)
class NodesNow:
    """The nodes taking jobs, as one pass sees them."""

    free: dict[str, tuple[Node, FreeNode]]  # name -> node and its free capacity (heard from lately)
    used: dict[int, Capacity]  # what `free` was worked out from
    taking: frozenset[int]  # ids of every node marked as taking jobs, heard from lately or not
    with_gpus: bool


@dataclass
class Plan:
    """What one pass would do, decided from the nodes as `seen`."""

    seen: NodesNow
    assignments: list[Assignment]

    def node(self, name: str) -> Node:
        return self.seen.free[name][0]

    def still_holds(self) -> bool:
        """True when the same nodes take jobs and their capacity in use is unchanged (two cheap reads).

        Asked under the scheduler lock, which on SQLite is the database's one
        write lock: every node's writes wait while it is held, so this reads
        only ids and sums, not whole node rows.
        """
        taking = frozenset(row[0] for row in TAKING_NODE_IDS.rows())
        return taking == self.seen.taking and capacity_in_use(list(taking), self.seen.with_gpus) == self.seen.used


def free_nodes(now: datetime) -> NodesNow:
    """Nodes that take jobs now, with their free capacity."""
    nodes = TAKING_NODES.objects()
    with_gpus = any(n.gpus for n in nodes)
    used = capacity_in_use([n.id for n in nodes], with_gpus)
    free = {}
    for node in nodes:
        if not is_lost(node.last_heartbeat, now, settings.DCT_NODE_TIMEOUT_SECONDS):
            free[node.name] = (node, free_node(node, used.get(node.id, Capacity())))
    return NodesNow(free, used, frozenset(n.id for n in nodes), with_gpus)


def effective_usage(user_ids: list[int], now: datetime) -> dict[int, float]:
    """user id -> (decayed usage + running charge) / share."""
    halflife = settings.DCT_FAIRSHARE_HALFLIFE_SECONDS
    accounts = {a.user_id: a for a in ACCOUNTS.objects(user_ids)}
    running: dict[int, list] = defaultdict(list)
    for owner_id, cpus, started in RUNNING_OF.values(user_ids):
        running[owner_id].append((cpus, started))
    usage = {}
    for uid in user_ids:
        account = accounts.get(uid)
        past = decayed(account.usage, account.usage_at, now, halflife) if account else 0.0
        share = account.share if account else 1.0
        usage[uid] = (past + running_charge(running[uid], now)) / max(share, 1e-9)
    return usage


class LazyQueue:
    """One user's queued jobs, oldest first, read a chunk at a time as a pass reaches them.

    A pass places at most one job per free cpu, spread over the users in
    fair-share order, so most users' queues are read only a few jobs deep;
    reading every user's queue `free cpus` deep would read up to
    users x free cpus rows.  Indexing past the last queued job (or past
    `limit`) raises IndexError, as a list would.
    """

    def __init__(self, owner_id: int, first_chunk: int, limit: int) -> None:
        self.owner_id = owner_id
        self.jobs: list[QueuedJob] = []
        self.chunk = max(first_chunk, 1)
        self.limit = limit
        self.exhausted = False

    def __getitem__(self, index: int) -> QueuedJob:
        while index >= len(self.jobs) and not self.exhausted:
            self._read_more()
        return self.jobs[index]

    def take(self, jobs: list[QueuedJob], asked: int) -> None:
        """Jobs read for this queue elsewhere (`read_heads`): the first `asked` of them, or all there are."""
        self.jobs += jobs
        self.chunk = max(asked * 2, 1)
        self.exhausted = len(jobs) < asked or len(self.jobs) >= self.limit

    def _read_more(self) -> None:
        want = min(self.chunk, self.limit - len(self.jobs))
        rows = Job.objects.filter(state=JobState.QUEUED, owner_id=self.owner_id)
        if self.jobs:
            rows = rows.filter(id__gt=self.jobs[-1].id)
        got = [QueuedJob(*row) for row in rows.order_by("id").values_list(*QUEUED_FIELDS)[:want]]
        self.jobs += got
        self.chunk *= 2
        self.exhausted = len(got) < want or len(self.jobs) >= self.limit


# Owners per UNION query: SQLite allows 500 arms in one compound SELECT.
HEADS_BATCH = 200
QUEUED_FIELDS = ("id", "owner_id", "request_cpus", "request_memory_mb", "request_gpus", "pinned_node", "container")


def queue_owners() -> list[int]:
    """Ids of the users with queued jobs.

    One probe of the (state, owner, id) index per user account, rather than
    a DISTINCT over every queued job: cheap with a long queue.
    """
    return [row[0] for row in QUEUE_OWNERS.rows()]


# The queries every pass makes whose filters never change, compiled once.
TAKING_NODES = Compiled(lambda: Node.objects.filter(state=NodeState.ONLINE, drained=False, accepts_jobs=True))
TAKING_NODE_IDS = Compiled(
    lambda: Node.objects.filter(state=NodeState.ONLINE, drained=False, accepts_jobs=True).values_list("id")
)
ACCOUNTS = CompiledIn(lambda ids: Account.objects.filter(user_id__in=ids))
RUNNING_OF = CompiledIn(
    lambda ids: Job.objects.filter(state=JobState.RUNNING, owner_id__in=ids).values_list(
        "owner_id", "request_cpus", "started_at"
    )
)
QUEUE_OWNERS = Compiled(
    lambda: (
        get_user_model()
        .objects.filter(Exists(Job.objects.filter(state=JobState.QUEUED, owner_id=OuterRef("pk"))))
        .values_list("id")
    )
)


def queue_heads(free_cpus: int) -> dict[int, LazyQueue]:
    """owner id -> their queued jobs, oldest first, read lazily up to what one pass can place."""
    owners = queue_owners()
    if not owners:
        return {}
    limit = min(free_cpus, MAX_HEADS_PER_USER)
    # Equal shares of the free cpus, and one more to see past the last placed.
    first = min(-(-free_cpus // len(owners)) + 1, limit)
    heads = {owner_id: LazyQueue(owner_id, first, limit) for owner_id in owners}
    for owner_id, jobs in read_heads(owners, first).items():
        heads[owner_id].take(jobs, first)
    return heads


def read_heads(owner_ids: list[int], count: int) -> dict[int, list[QueuedJob]]:
    """owner id -> their oldest `count` queued jobs, for many owners in one query per HEADS_BATCH.

    A UNION ALL of one indexed LIMIT query per owner, written out because the
    ORM compiles each arm separately (a query per owner costs a round trip each).
    """
    table = connection.ops.quote_name(Job._meta.db_table)
    select = f"SELECT {', '.join(QUEUED_FIELDS)} FROM {table}"  # noqa: S608 (names from the model)
    arm = f"SELECT * FROM ({select} WHERE state = %s AND owner_id = %s ORDER BY id LIMIT %s) AS h"  # noqa: S608
    heads: dict[int, list[QueuedJob]] = defaultdict(list)
    for first in range(0, len(owner_ids), HEADS_BATCH):
        batch = owner_ids[first : first + HEADS_BATCH]
        sql = " UNION ALL ".join(f"{arm}{i}" for i in range(len(batch)))
        params = [value for owner_id in batch for value in (JobState.QUEUED.value, owner_id, count)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for row in cursor.fetchall():
                heads[row[1]].append(QueuedJob(*row))
    for jobs in heads.values():
        jobs.sort(key=lambda job: job.id)
    return heads


def plan_pass(now: datetime) -> Plan | None:
    """Decide what one pass would place (reads only); None when nothing can be placed."""
    seen = free_nodes(now)
    free_cpus = sum(max(free.free_cpus, 0) for _, free in seen.free.values())
    if free_cpus <= 0:
        return None
    heads = queue_heads(free_cpus)
    if not heads:
        return None
    usage = effective_usage(list(heads), now)
    # mypy: a LazyQueue indexes like a list (IndexError past its end) without being a Sequence.
    assignments = pick_assignments(heads, [free for _, free in seen.free.values()], usage)  # type: ignore[arg-type]
    if not assignments:
        return None
    return Plan(seen, assignments)


def schedule_pass(now: datetime) -> int:
    """Fill every free slot from the queue in fair-share order; returns the number dispatched.

    The pass is planned before it takes the scheduler lock (on SQLite, the
    database's one write lock, which every node needs to start and end its
    jobs); see `carry_out` for what is checked under the lock.
    """
    return carry_out(plan_pass(now), now)


def carry_out(plan: Plan | None, now: datetime) -> int:
    """Claim and send what `plan` placed; returns the number dispatched.

    Under the scheduler lock it first checks that the plan still holds: the
    same nodes take jobs (none was drained, lost or refused meanwhile) and
    their capacity in use is what the plan saw.  If another pass, a job's end
    or a drain changed that, it plans again.  A job submitted or cancelled
    meanwhile waits for the next pass, as it would if it had come a moment
    later (a cancelled one is not claimed: claims are conditional).
    """
    if plan is None:
        return 0
    sends: list[tuple[int, int, str]] = []
    with transaction.atomic():
        take_scheduler_lock()
        if not plan.still_holds():
            plan = plan_pass(now)
            if plan is None:
                return 0
            # Jobs without GPUs are claimed together; the few with GPUs one by one.
        assignments = plan.assignments
        won = transitions.claim_many({a.job_id: plan.node(a.node).id for a in assignments if not a.gpu_indices}, now)
        for a in assignments:
            node = plan.node(a.node)
            attempt = (
                transitions.claim(a.job_id, node.id, list(a.gpu_indices), now) if a.gpu_indices else won.get(a.job_id)
            )
            if attempt is not None:
                sends.append((a.job_id, attempt, node.name))
    send_runs(sends)
    return len(sends)


def take_scheduler_lock() -> None:
    """Hold the scheduler lock's row until the transaction ends (an UPDATE locks it on every database)."""
    table = connection.ops.quote_name(SchedulerLock._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET id = id WHERE id = 1")  # noqa: S608
        if cursor.rowcount:
            return
    SchedulerLock.objects.get_or_create(id=1)  # the first pass ever
    SchedulerLock.objects.select_for_update().get(id=1)


def send_run(job_id: int, attempt: int, node_name: str) -> bool:
    """Put the run message on the node's own queue; False (logged) when Redis is away."""
    return send_runs([(job_id, attempt, node_name)]) == 1


def send_runs(sends: list[tuple[int, int, str]]) -> int:
    """Put run messages (job id, attempt, node) on the nodes' own queues in one Redis round trip.

    Returns how many went: all, or none (logged) when Redis is away; the
    resend step sends the lost ones again.
    """
    if not sends:
        return 0
    settle_conf()
    try:
        with app.producer_or_acquire() as producer, producer.batch():
            for job_id, attempt, node_name in sends:
                app.send_task(
                    RUN_TASK,
                    args=[job_id, attempt],
                    queue=node_name,
                    ignore_result=True,
                    producer=producer,
                    # Celery sends to a node's queue through Redis's anonymous exchange
                    # (straight onto the list the node reads), so there is nothing to
                    # declare; declaring cost each message a copy and a bind of the queue.
                    declare=[],
                )
    except Exception as exc:  # kombu raises many kinds; the resend step retries
        log.warning("could not send %d job(s) to their nodes: %s", len(sends), exc)
        return 0
    return len(sends)


def resend_stale(now: datetime) -> int:
    """Send again the dispatched jobs that never started (their message was lost)."""
    cutoff = now - timedelta(seconds=RESEND_AFTER_SECONDS)
    stale = Job.objects.filter(state=JobState.DISPATCHED, dispatched_at__lt=cutoff, node__state=NodeState.ONLINE)
    count = 0
    for job_id, attempt, node_name in stale.values_list("id", "attempts", "node__name")[:1000]:
        if Job.objects.filter(id=job_id, state=JobState.DISPATCHED, attempts=attempt).update(dispatched_at=now):
            log.info("job %s attempt %s never started on %s: sending again", job_id, attempt, node_name)
            count += send_run(job_id, attempt, node_name)
    return count


def sweep_lost_nodes(now: datetime) -> int:
    """Mark silent nodes offline and requeue their jobs; returns the number of jobs moved."""
    moved = 0
    cutoff = now - timedelta(seconds=settings.DCT_NODE_TIMEOUT_SECONDS)
    for node in Node.objects.filter(state=NodeState.ONLINE, last_heartbeat__lt=cutoff):
        if not Node.objects.filter(id=node.id, state=NodeState.ONLINE, last_heartbeat__lt=cutoff).update(
            state=NodeState.OFFLINE
        ):
            continue  # it came back meanwhile
        log.warning("node %s is offline (no heartbeat since %s)", node.name, node.last_heartbeat)
        moved += requeue_node_jobs(node, "node lost", now)
    return moved


def requeue_node_jobs(node: Node, reason: str, now: datetime, states: tuple = ACTIVE_STATES) -> int:
    """Send the node's jobs in `states` back to the queue (or to failed past the attempt limit)."""
    moved = 0
    for job_id, attempt in Job.objects.filter(node=node, state__in=states).values_list("id", "attempts"):
        if transitions.requeue(job_id, attempt, reason, now):
            moved += 1
    return moved


_redis: redis.Redis | None = None


def _redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return _redis


def wake_scheduler() -> None:
    """Tell the scheduler there is work (a submit, a job end); harmless when Redis is away."""
    try:
        # One round trip, no MULTI: a token more or less is harmless, the list stays one long.
        # mypy: redis-py types a command as its result; on a pipeline it returns the pipeline.
        _redis_client().pipeline(transaction=False).lpush(WAKE_KEY, 1).ltrim(WAKE_KEY, 0, 0).execute()  # type: ignore[attr-defined]
    except redis.RedisError as exc:
        log.debug("could not wake the scheduler: %s", exc)


class _Waker:
    """Wakes the scheduler from a thread of its own, so a node's job slot does not wait on Redis.

    Wakes asked for while one is being sent are sent as one.  A wake lost
    with the process costs at most the scheduler's idle second.
    """

    def __init__(self) -> None:
        self.wanted = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def __call__(self) -> None:
        self.wanted.set()
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="wake-scheduler", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            self.wanted.wait()
            self.wanted.clear()
            wake_scheduler()


wake_scheduler_soon = _Waker()


def wait_for_wake(timeout_seconds: float) -> bool:
    """Block until woken or the timeout passes; True when woken."""
    try:
        return _redis_client().blpop([WAKE_KEY], timeout=timeout_seconds) is not None
    except redis.RedisError as exc:
        log.warning("Redis is not answering (%s); retrying", exc)
        time.sleep(min(timeout_seconds, 1.0))
        return False
