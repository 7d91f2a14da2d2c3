"""One scheduling pass: plan from a snapshot (reads only), then claim the jobs and send them to their nodes.

Each function is one step that returns how much work it did; the loop in
`management/commands/scheduler.py` only repeats them (with `housekeeping`).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db import connection, transaction

from dctoolkit.accounts.fairshare import Team
from dctoolkit.accounts.limits import Room
from dctoolkit.accounts.usage import billing, group_rooms, group_totals, rooms, standings, teams
from dctoolkit.celery import app, settle_conf
from dctoolkit.jobs import transitions
from dctoolkit.jobs.scheduling.classads import NodeAttrs, verdicts
from dctoolkit.jobs.scheduling.lock import edits_seen, take_scheduler_lock
from dctoolkit.jobs.scheduling.matching import AdAsk, AdVerdict
from dctoolkit.jobs.scheduling.policy import Assignment, FreeNode, pick_assignments
from dctoolkit.jobs.scheduling.queues import Heads, queue_heads
from dctoolkit.jobs.scheduling.runmessages import TEMPLATE_ARGS, Template, push_all
from dctoolkit.jobs.scheduling.snapshot import TAKING_NODE_IDS, NodesNow, TakingNode, free_nodes, taking_in_use

log = logging.getLogger(__name__)


RUN_TASK = "dctoolkit.run_job"

# How this process's plans ended, by outcome: "placed"; "full", no free cpu; "empty", no queued job;
# "unplaced", the queue was read and nothing fits; "unclaimed", every job planned was taken or changed
# meanwhile; "replanned", stale under the lock and made again (then counted once more as what it ended
# as).  Written with the pass statistics (`operations.passes`) and logged when the scheduler stops.
OUTCOMES: Counter[str] = Counter()


@dataclass
class Plan:
    """What one pass would do, decided from the nodes as `seen` and the queued jobs as they were after
    `edits` edits (`lock.edits_seen`, read before the jobs)."""

    seen: NodesNow
    assignments: list[Assignment]
    edits: int

    def node(self, name: str) -> TakingNode:
        return self.seen.free[name][0]

    def still_holds(self, edits: int) -> bool:
        """True when no job was edited since the plan read them (`edits`, the count under the lock),
        and the same nodes take jobs with their capacity in use unchanged (one cheap read; two with GPUs).

        Asked under the scheduler lock, which on SQLite is the database's one
        write lock: every node's writes wait while it is held, so this reads
        only ids and sums, not whole node rows.
        """
        if edits != self.edits:
            return False  # a job's size or placement may differ from what the plan placed
        rows, used = taking_in_use(TAKING_NODE_IDS, self.seen.with_gpus)
        return frozenset(row[0] for row in rows) == self.seen.taking and used == self.seen.used


def plan_pass(now: datetime) -> Plan | None:
    """Decide what one pass would place (reads only); None when nothing can be placed.

    A pass with every slot taken (most of a busy queue's: each job's end wakes one, and the pass before may
    have filled that slot already) stops after one read: the nodes with their sums (two with GPUs).
    """
    seen = free_nodes(now)
    free_cpus = sum(max(free.free_cpus, 0) for _, free in seen.free.values())
    if free_cpus <= 0:
        OUTCOMES["full"] += 1
        return None
    edits = edits_seen()  # before the jobs are read: an edit committed after this makes the plan stale
    heads = queue_heads(free_cpus)
    if not heads.jobs:
        OUTCOMES["empty"] += 1
        return None
    nodes = [free for _, free in seen.free.values()]
    found = standings(heads.jobs, now)
    usage = {uid: s.effective for uid, s in found.items()}
    pools = group_rooms(group_totals())
    assignments = pick_reading_more(heads, nodes, usage, seen.ads(), rooms(found), teams(found, now), pools)
    if not assignments:
        OUTCOMES["unplaced"] += 1
        return None
    return Plan(seen, assignments, edits)


def pick_reading_more(
    heads: Heads,
    nodes: list[FreeNode],
    usage: dict[int, float],
    ads: list[NodeAttrs],
    room: dict[int, Room],
    team: dict[int, Team] | None = None,
    pools: dict[int, Room] | None = None,
) -> list[Assignment]:
    """Ask the planner; while it runs out of a user's known jobs, read more of theirs and ask again.

    The ClassAd requirements and rank of the jobs read are evaluated here, before the planner (which is
    pure) sees them: each distinct one once per node (`classads` caches them across passes too)."""
    judged, weights = judge_ads(heads, ads, {}), billing()
    picks = pick_assignments(heads.jobs, nodes, usage, heads.more, judged, weights, room, team, pools)
    while picks.wants_more:
        heads.read_more(picks.wants_more)
        judged = judge_ads(heads, ads, judged)
        picks = pick_assignments(heads.jobs, nodes, usage, heads.more, judged, weights, room, team, pools)
    return picks.assignments


def judge_ads(heads: Heads, ads: list[NodeAttrs], known: dict[AdAsk, AdVerdict]) -> dict[AdAsk, AdVerdict]:
    """`known`, and the verdicts of the asks among `heads`' jobs not in it."""
    asks = {ask for jobs in heads.jobs.values() for job in jobs if (ask := job.ad) is not None and ask not in known}
    return {**known, **verdicts(asks, ads)} if asks else known


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
    their capacity in use is what the plan saw, and no job was edited since
    (an edit takes the lock too: see `lock`).  If another pass, a job's end,
    a drain or an edit changed that, it plans again.  A job submitted or cancelled
    meanwhile waits for the next pass, as it would if it had come a moment
    later (a cancelled one is not claimed: claims are conditional).
    """
    if plan is None:
        return 0
    sends: list[tuple[int, int, str, int]] = []
    outermost = not connection.in_atomic_block  # the scheduler's loop: its own transaction (tests: theirs)
    with transaction.atomic():
        if outermost:
            commit_unflushed()
        edits = take_scheduler_lock()
        if not plan.still_holds(edits):
            OUTCOMES["replanned"] += 1
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
                sends.append((a.job_id, attempt, node.name, a.cpus))
    send_runs(sends)
    OUTCOMES["placed" if sends else "unclaimed"] += 1
    return len(sends)


def commit_unflushed() -> None:
    """On PostgreSQL, let the current transaction's commit return before its WAL record is flushed to disk.

    Only the pass's claim does this (a flush is 1-4 ms of a job's latency on
    this kind of disk), and only in a transaction of its own, since the
    setting applies to all of the transaction's writes.  It is safe for the
    claim alone: a claim lost in a server crash leaves its jobs queued, and
    the node's start of a message sent for it, conditional on `dispatched`
    and the attempt, finds no job and skips it; and since PostgreSQL flushes
    WAL in order, a start that survived (its own commit is flushed) implies
    its claim did.  The node's start and end and every submission stay
    flushed: a lost start could let one attempt run twice, a lost end or
    submission is a lost result or job.  The other databases: no change
    (SQLite in WAL mode with synchronous=NORMAL does not flush commits).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO off")


def send_run(job_id: int, attempt: int, node_name: str, cpus: int) -> bool:
    """Put the run message on the node's own queue; False (logged) when Redis is away."""
    return send_runs([(job_id, attempt, node_name, cpus)]) == 1


def send_runs(sends: list[tuple[int, int, str, int]]) -> int:
    """Put run messages (job id, attempt, node, the job's request_cpus) on the nodes' own queues in one Redis
    round trip; the task's arguments are (job id, attempt, cpus).

    Returns how many went: all, or none (logged) when Redis is away; the
    resend step sends the lost ones again.  Each message is Celery's own,
    made once and copied with each job's fields (`runmessages`), and pushed
    by a Redis client of this process's: a node's queue is a plain list
    (Celery's anonymous exchange), and taking a producer from Celery's pool
    for each pass cost a third of the send.
    """
    if not sends:
        return 0
    settle_conf()
    try:
        template = _templates["run"] if "run" in _templates else make_template()
        if template is not None:
            push_all(_run_client(), template, sends)
        else:
            with app.producer_or_acquire() as producer, producer.batch():
                for job_id, attempt, node_name, cpus in sends:
                    celery_send(producer, [job_id, attempt, cpus], node_name)
    except Exception as exc:  # kombu and redis-py raise many kinds; the resend step retries
        log.warning("could not send %d job(s) to their nodes: %s", len(sends), exc)
        return 0
    return len(sends)


_clients: dict[str, redis.Redis] = {}


def _run_client() -> redis.Redis:
    """This process's client of the broker (Celery's broker URL and socket options; it reconnects by itself)."""
    if "run" not in _clients:
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        _clients["run"] = redis.Redis.from_url(
            settings.CELERY_BROKER_URL,
            socket_timeout=options.get("socket_timeout"),
            socket_connect_timeout=options.get("socket_connect_timeout"),
            socket_keepalive=options.get("socket_keepalive"),
            health_check_interval=options.get("health_check_interval", 0),
        )
    return _clients["run"]


def celery_send(producer, args: list[int], queue: str) -> None:
    app.send_task(
        RUN_TASK,
        args=args,
        queue=queue,
        ignore_result=True,
        producer=producer,
        # Celery sends to a node's queue through Redis's anonymous exchange
        # (straight onto the list the node reads), so there is nothing to
        # declare; declaring cost each message a copy and a bind of the queue.
        declare=[],
    )


# This process's run-message template: not made yet, made (a Template), or refused (None).
_templates: dict[str, Template | None] = {}


def make_template() -> Template | None:
    """The run-message template, made by Celery once per process: one message sent to a scratch queue of
    our own and read back from it."""
    scratch = f"dct-run-template-{uuid.uuid4()}"
    with app.producer_or_acquire() as producer:
        celery_send(producer, list(TEMPLATE_ARGS), scratch)
        with producer.channel.conn_or_acquire() as client:
            raw = client.lpop(scratch)
            client.delete(scratch)
    _templates["run"] = Template.of(raw) if raw else None
    if _templates["run"] is None:
        log.warning("Celery's run message has a shape this version does not know: sending through Celery")
    return _templates["run"]
