"""The scheduler's other steps: send again a message that was lost, take back a silent node's jobs, apply
dependencies, start times and throttles, and the jobs' periodic policy expressions."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Min, OuterRef, Q

from dctoolkit.jobs import eventlog, jobpolicy, policyfacts, transitions
from dctoolkit.jobs.models import FINAL_STATES, STARTED_STATES, Dependency, Job, JobState
from dctoolkit.jobs.scheduling.dependencies import Outcome, edge_outcome, never_reason
from dctoolkit.jobs.scheduling.dispatch import send_run
from dctoolkit.jobs.scheduling.upstream import throttle_slots
from dctoolkit.lib.fastsql import Compiled, unindexed, update_rows
from dctoolkit.nodes.models import Node, NodeState
from dctoolkit.operations.retention import retention

log = logging.getLogger(__name__)


# A dispatched job that has not started after this long has lost its message
# (Redis restarted empty, a worker died holding it): send it again.  The
# attempt check on the node makes a duplicate harmless.
RESEND_AFTER_SECONDS = 15

# The reads each chores round makes, compiled once (compiling them cost more than running them: 0.5-3 ms each,
# bench/README.md "Chores").  The filters are chained so that their placeholders keep this order; a
# datetime goes in through `_at`.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STALE_DISPATCHED = Compiled(
    lambda: (
        Job.objects.filter(state=JobState.DISPATCHED)
        .filter(dispatched_at__lt=_EPOCH)
        .filter(node__state=NodeState.ONLINE)
        .values_list("id", "attempts", "node__name", "request_cpus")[:1000]
    )
)
_SILENT_NODES = Compiled(lambda: Node.objects.filter(state=NodeState.ONLINE).filter(last_heartbeat__lt=_EPOCH))
# Waiting jobs at all: a queue with none (most of the time) makes `release_waiting` no more than this probe.
_ANY_WAITING = Compiled(lambda: Job.objects.filter(state=JobState.WAITING).order_by().values_list("id")[:1])


def _at(when: datetime) -> object:
    return connection.ops.adapt_datetimefield_value(when)


def resend_stale(now: datetime) -> int:
    """Send again the dispatched jobs that never started (their message was lost)."""
    cutoff = now - timedelta(seconds=RESEND_AFTER_SECONDS)
    count = 0
    for job_id, attempt, node_name, cpus in _STALE_DISPATCHED.rows(
        JobState.DISPATCHED.value, _at(cutoff), NodeState.ONLINE.value
    ):
        # The node cannot say why (its run may be what cannot reach the database): the reason says both.
        why = resend_reason(node_name)
        if Job.objects.filter(id=job_id, state=JobState.DISPATCHED, attempts=attempt).update(
            dispatched_at=now, reason=why
        ):
            log.info("job %s attempt %s never started on %s: sending again", job_id, attempt, node_name)
            count += send_run(job_id, attempt, node_name, cpus)
    return count


def resend_reason(node_name: str) -> str:
    """A dispatched job's reason once it has been sent again (`start` clears it)."""
    return (
        f"not started on {node_name} since it was sent: {node_name} may not reach the database, or lost the "
        f"message; sending it again every {RESEND_AFTER_SECONDS} s"
    )


def sweep_lost_nodes(now: datetime) -> int:
    """Mark silent nodes offline and requeue their jobs; returns the number of jobs moved."""
    moved = 0
    cutoff = now - timedelta(seconds=settings.DCT_NODE_TIMEOUT_SECONDS)
    for node in _SILENT_NODES.objects(NodeState.ONLINE.value, _at(cutoff)):
        if not Node.objects.filter(id=node.id, state=NodeState.ONLINE, last_heartbeat__lt=cutoff).update(
            state=NodeState.OFFLINE
        ):
            continue  # it came back meanwhile
        log.warning("node %s is offline (no heartbeat since %s)", node.name, node.last_heartbeat)
        moved += transitions.requeue_node_jobs(node, "node lost", now)
    return moved


def purge_expired_files(now: datetime) -> int:
    """DCT_RETENTION: remove one batch of old jobs' files (records stay); returns how many jobs lost theirs."""
    return retention.step(now)


# Dependency edges applied per transaction: a batch that ends frees its
# thousands of children over a few rounds, each short.
RESOLVE_BATCH = 900  # ids in one IN (...): below SQLite's oldest limit (999)


def _open_edges() -> list[tuple]:
    """(edge, child, kind, parent, parent's state) of up to RESOLVE_BATCH unresolved edges whose parent ended.

    Written out, for a plan that starts from the open edges (the (resolved, parent) index: none, most of
    the time) on every database: the ORM's `NOT resolved` is no index term for SQLite, which then read every
    ended job's index entry (0.5 ms a round beside 5,000)."""
    ended = ", ".join(["%s"] * len(FINAL_STATES))
    sql = (
        f"SELECT d.id, d.child_id, d.kind, d.parent_id, j.state FROM {Dependency._meta.db_table} d"  # noqa: S608
        f" JOIN {Job._meta.db_table} j ON j.id = d.parent_id"
        f" WHERE d.resolved = %s AND {unindexed('j.state')} IN ({ended}) LIMIT {RESOLVE_BATCH}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [False, *(state.value for state in FINAL_STATES)])
        return cursor.fetchall()


def resolve_dependencies(now: datetime) -> int:
    """Apply parents' ends to their waiting children; returns how many children changed state.

    An edge whose condition now holds is marked resolved, and a waiting
    child with no unresolved edge left becomes queued; a child whose
    condition can never hold ends cancelled, naming the parent.  One
    transaction per batch: a scheduler killed half-way leaves every edge
    as it was, to be applied again (each step is conditional, so twice is
    harmless).  Reads edges, never the queue: a scheduling pass stays as
    fast beside 10,000 waiting jobs.
    """
    # Read before the transaction: a round with nothing to apply opens none, and what is read is re-checked
    # by each conditional UPDATE as it was inside one.
    rows = _open_edges()
    if not rows:
        return 0
    with transaction.atomic():
        met: list[int] = []
        never: dict[int, str] = {}
        for edge_id, child_id, kind, parent_id, parent_state in rows:
            if edge_outcome(kind, parent_state) is Outcome.MET:
                met.append(edge_id)
            else:
                never.setdefault(child_id, never_reason(kind, parent_id, parent_state))
        changed = 0
        for child_id, reason in never.items():
            changed += Job.objects.filter(id=child_id, state__in=(JobState.WAITING, JobState.HELD)).update(
                state=JobState.CANCELLED, finished_at=now, reason=reason
            )
            # Nothing is left to wait for: its other edges are settled with it.
            Dependency.objects.filter(child_id=child_id, resolved=False).update(resolved=True)
        Dependency.objects.filter(id__in=met).update(resolved=True)
        children = {child_id for _, child_id, *_ in rows} - set(never)
        unresolved = Dependency.objects.filter(child_id=OuterRef("pk"), resolved=False)
        changed += (
            Job.objects.filter(id__in=children, state=JobState.WAITING, max_running=None)
            .filter(Q(start_after=None) | Q(start_after__lte=now))  # else `release_waiting` queues it
            .exclude(Exists(unresolved))
            .update(state=JobState.QUEUED, reason="")
        )
    if changed:
        log.info("dependencies: %s waiting jobs queued or cancelled", changed)
    return changed or len(rows)


def queue_due_retries(now: datetime) -> int:
    """Waiting retries whose delay is over -> queued, in one UPDATE; returns how many.

    (A retry has no dependency left to wait for: they were met before its first run.)
    """
    # A throttled job's retry waits for its turn too: `release_waiting` queues it.
    quote = connection.ops.quote_name
    due = (f"{quote('retry_at')} <= %s AND {quote('max_running')} IS NULL", [_at(now)])
    return update_rows(Job, {"state": JobState.WAITING}, {"state": JobState.QUEUED, "retry_at": None}, due)


def release_waiting(now: datetime) -> int:
    """Waiting jobs whose start time is due, and throttled ones with room in their submission -> queued.

    Returns how many.  A job is queued only when its dependencies are met,
    its start time is past (or none) and a retry's delay is over.  Start
    times: one UPDATE.  Throttles: one GROUP BY over the throttled jobs that
    hold a slot, then per throttled submission with a job ready, one UPDATE
    of at most as many jobs as it has room for (lowest ids first).  Reads
    neither the queue nor any unthrottled job: the scheduling pass is not
    slowed by thousands of waiting jobs.
    """
    if not _ANY_WAITING.rows():
        return 0
    unresolved = Exists(Dependency.objects.filter(child_id=OuterRef("pk"), resolved=False))
    due = Q(start_after=None) | Q(start_after__lte=now)
    changed = (
        Job.objects.filter(state=JobState.WAITING, retry_at=None, max_running=None, start_after__lte=now)
        .exclude(unresolved)
        .update(state=JobState.QUEUED, reason="")
    )
    throttled = Job.objects.filter(max_running__isnull=False)
    ready = (
        throttled.filter(state=JobState.WAITING)
        .filter(due, Q(retry_at=None) | Q(retry_at__lte=now))
        .exclude(unresolved)
    )
    # Per submission (one GROUP BY); jobs of one file given different limits keep the smallest.
    grouped = ready.order_by().values("submission_id").annotate(limit=Min("max_running"))
    limits = dict(grouped.values_list("submission_id", "limit"))
    if not limits:
        return changed
    with transaction.atomic():
        active = throttle_slots(limits)
        for submission_id, limit in limits.items():
            room = (limit or 0) - active.get(submission_id, 0)
            if room <= 0:
                continue
            ids = list(ready.filter(submission_id=submission_id).order_by("id").values_list("id", flat=True)[:room])
            changed += Job.objects.filter(id__in=ids, state=JobState.WAITING).update(
                state=JobState.QUEUED, reason="", retry_at=None
            )
    if changed:
        log.info("start times and throttles: %s waiting jobs queued", changed)
    return changed


# The jobs whose periodic expressions are read in one query (and their runs in one more).
POLICY_BATCH = 2000
# What the periodic expressions are asked about: jobs not ended (HTCondor's idle, running, held).
_POLICY_STATES = (
    JobState.WAITING, JobState.QUEUED, JobState.HELD, JobState.DISPATCHED, JobState.RUNNING, JobState.SUSPENDED,
)  # fmt: skip


def apply_job_policies(now: datetime) -> int:
    """HTCondor's periodic_remove, periodic_hold and periodic_release: evaluate them for every job not ended
    that has one and act on what they say; returns how many jobs changed.

    Reads only the jobs marked `periodic_policy` (an index): a queue without such expressions costs one
    empty lookup.  Each change is the owner's action's own conditional UPDATE (`transitions`), with the
    expression as the reason, so a job that moved meanwhile is left alone.
    """
    changed, after = 0, 0
    while True:
        # By id, POLICY_BATCH rows at a time: every such job is seen each round, in bounded memory.
        marked = Job.objects.filter(periodic_policy=True, state__in=_POLICY_STATES, id__gt=after)
        # With its owner (Owner): one query a batch.
        jobs = list(marked.select_related("owner").order_by("id")[:POLICY_BATCH])
        if not jobs:
            break
        walls = policyfacts.run_walls(job.id for job in jobs)
        for job in jobs:
            facts = policyfacts.job_facts(job, now, walls=walls.get(job.id, (0.0, 0.0)))
            decided = jobpolicy.periodic(job.policy, facts)
            if decided.action:
                changed += _act(job, decided, now)
        after = jobs[-1].id
    if changed:
        log.info("job policy: %s jobs held, released or removed by their periodic expressions", changed)
    return changed


def _act(job: Job, decided: jobpolicy.Decision, now: datetime) -> int:
    one = Job.objects.filter(id=job.id, state=job.state, attempts=job.attempts)
    if decided.action == "remove":
        done = transitions.cancel_jobs(one, now, reason=decided.reason)
        event = eventlog.aborted
    elif decided.action == "release":
        done = transitions.release_jobs(one, now, reason=decided.reason)
        event = eventlog.released
    else:
        done = transitions.hold_jobs(one, now, decided.reason, jobpolicy.HOLD_BY_POLICY, decided.subcode)
        event = partial(eventlog.held, code=jobpolicy.HOLD_BY_POLICY, subcode=decided.subcode)
    if done and job.state not in STARTED_STATES:  # a running job's node writes the event of its end
        transitions.log_event(job, lambda c, p, when: event(c, p, when, decided.reason), now)
    return done
