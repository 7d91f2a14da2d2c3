"""Every job state change, each one conditional UPDATE whose row count says who won.

Losing a race (another scheduler claimed the job, the user cancelled it, the
node was declared lost) is a normal outcome: the function returns False and
the caller leaves the job alone.  The attempt number in the WHERE clause is
what keeps one dispatch from running twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from dctoolkit.accounts.granting import folders_from, owner_grants_column
from dctoolkit.jobs import eventlog, streams
from dctoolkit.jobs.jobpolicy import HOLD_BY_POLICY, HOLD_BY_USER
from dctoolkit.jobs.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    KILLING,
    STARTED_STATES,
    Attempt,
    Dependency,
    Job,
    JobState,
    KillRequest,
    Submission,
)
from dctoolkit.lib import fastsql
from dctoolkit.lib.fastsql import (
    Add,
    Compiled,
    insert_row,
    insert_select_sql,
    unindexed,
    update_returns_rows,
    update_rows,
    update_sql,
)
from dctoolkit.nodes.models import Node

log = logging.getLogger(__name__)

# Jobs claimed per UPDATE where UPDATE returns no rows (MariaDB, MySQL, SQLite before 3.35): 3 query parameters
# each, below SQLite's oldest limit (999).
CLAIM_BATCH = 300


def claim(job_id: int, node_id: int, gpu_indices: list[int], now: datetime) -> int | None:
    """queued -> dispatched to `node_id`; returns the new attempt number, or None if lost."""
    won = Job.objects.filter(id=job_id, state=JobState.QUEUED).update(
        state=JobState.DISPATCHED,
        node_id=node_id,
        gpu_indices=gpu_indices,
        attempts=F("attempts") + 1,
        dispatched_at=now,
        reason="",
    )
    if not won:
        return None
    return Job.objects.filter(id=job_id).values_list("attempts", flat=True).first()


def claim_many(placements: Mapping[int, int], now: datetime) -> dict[int, int]:
    """Queued jobs without GPUs -> dispatched: job id -> node id.  Returns job id -> new attempt
    for the jobs won; a job no longer queued (cancelled, held meanwhile) is left out.

    The same conditional UPDATE as `claim`, for many jobs at once (their
    gpu_indices are empty already: they asked for none): on PostgreSQL and
    SQLite one statement of fixed text for all of them, joined to the
    placements given as parameters (`_claim_joined`); on MariaDB, MySQL (and
    SQLite before 3.35) one per CLAIM_BATCH.  The caller holds the scheduler lock, so the jobs
    dispatched at `now` are exactly the ones this call won.
    """
    won: dict[int, int] = {}
    if not placements:
        return won
    if update_returns_rows():
        rows = _claim_joined(placements, now)
        return {job_id: attempt for job_id, node_id, attempt in rows if placements[job_id] == node_id}
    items = list(placements.items())
    for first in range(0, len(items), CLAIM_BATCH):
        batch = dict(items[first : first + CLAIM_BATCH])
        _dispatch_rows(batch, now)  # MariaDB and MySQL return no rows: read them back
        rows = _dispatched_rows(batch, now)
        won.update((job_id, attempt) for job_id, node_id, attempt in rows if batch[job_id] == node_id)
    return won


def _claim_joined(placements: Mapping[int, int], now: datetime) -> list[tuple[int, int, int]]:
    # One UPDATE ... FROM the placements, RETURNING (id, node id, attempts) of the jobs it dispatched.  Its text
    # does not depend on how many jobs there are, so PostgreSQL prepares it once per connection (fastsql.cursor),
    # and finds the queued jobs once for all of them: seven CASE statements of 300 jobs each did that seven times
    # (without statistics, a bitmap scan of every queued job's `state` entry each); SQLite joins its JSON object to
    # the primary key instead of running down a 300-branch CASE for every row.  bench/README.md has the numbers.
    table = connection.ops.quote_name(Job._meta.db_table)
    sets = "state = %s, node_id = p.node, attempts = j.attempts + 1, dispatched_at = %s, reason = ''"
    state, at = JobState.DISPATCHED.value, connection.ops.adapt_datetimefield_value(now)
    given: list[str | list[int]]
    if connection.vendor == "postgresql":
        source = "unnest(%s::bigint[], %s::bigint[]) AS p(job, node)"
        join, given = "j.id = p.job", [list(placements), list(placements.values())]
    else:  # SQLite (3.35 and later: UPDATE ... FROM and RETURNING); the object's keys are text
        source = "(SELECT key AS job, value AS node FROM json_each(%s)) AS p"
        join, given = "j.id = CAST(p.job AS INTEGER)", [json.dumps(placements)]
    sql = (
        f"UPDATE {table} AS j SET {sets} FROM {source} "  # noqa: S608
        # RETURNING unqualified: SQLite takes no table name there (nor its alias).
        f"WHERE {join} AND {unindexed('j.state')} = %s RETURNING id, node_id, attempts"
    )
    with fastsql.cursor() as cursor:
        cursor.execute(sql, [state, at, *given, JobState.QUEUED.value])
        return cursor.fetchall()


def _dispatch_rows(batch: dict[int, int], now: datetime) -> None:
    # Written out because Django's Case(When(...)) deep-copies every branch:
    # with a few hundred jobs that costs more than the UPDATE itself.
    table = connection.ops.quote_name(Job._meta.db_table)
    cases = " ".join(["WHEN %s THEN %s"] * len(batch))
    marks = ", ".join(["%s"] * len(batch))
    sql = (
        f"UPDATE {table} SET state = %s, node_id = CASE id {cases} END, attempts = attempts + 1, "  # noqa: S608
        f"dispatched_at = %s, reason = '' WHERE {unindexed('state')} = %s AND id IN ({marks})"
    )
    params = [
        JobState.DISPATCHED.value,
        *(value for pair in batch.items() for value in pair),
        connection.ops.adapt_datetimefield_value(now),
        JobState.QUEUED.value,
        *batch,
    ]
    with fastsql.cursor() as cursor:
        cursor.execute(sql, params)


def _dispatched_rows(batch: dict[int, int], now: datetime) -> list[tuple[int, int, int]]:
    # (id, node id, attempts) of the batch's jobs dispatched at `now`; written out as _dispatch_rows is.
    table = connection.ops.quote_name(Job._meta.db_table)
    marks = ", ".join(["%s"] * len(batch))
    sql = f"SELECT id, node_id, attempts FROM {table} WHERE {unindexed('state')} = %s AND dispatched_at = %s AND id IN ({marks})"  # noqa: S608, E501
    with fastsql.cursor() as cursor:
        cursor.execute(sql, [JobState.DISPATCHED.value, connection.ops.adapt_datetimefield_value(now), *batch])
        return cursor.fetchall()


def start(job_id: int, attempt: int, node_name: str, now: datetime, cpu_indices: Sequence[int] = ()) -> bool:
    """dispatched -> running, only if this attempt is still dispatched to this node; `cpu_indices`: the
    node's cores the attempt is pinned to."""
    return bool(update_rows(*_start_statement(job_id, attempt, node_name, now, cpu_indices)))


# A job's whole row, as the node reads it to run the job; compiled once (see fastsql).
JOB_ROW = Compiled(lambda: Job.objects.filter(id=0))


def start_and_read(
    job_id: int, attempt: int, node_name: str, now: datetime, cpu_indices: Sequence[int], again: bool = False
) -> Job | None:
    """`start`, and the job's row as it started; None when the attempt was no longer this node's to start.

    One statement where UPDATE returns rows (PostgreSQL, SQLite 3.35 and
    later), the UPDATE then a read elsewhere.  `again`: this very call was
    sent before and its answer lost with the connection (`retry_if_gone`):
    the start it may have written already (running, started at `now`,
    which no other start has) counts as won.  On PostgreSQL the job's
    `granted_at_start` is its owner's grants, read by the same statement.
    """
    model, where, values, (extra, params) = _start_statement(job_id, attempt, node_name, now, cpu_indices, not again)
    if again:  # the state and the kill request are checked in `extra` instead
        where = {"id": job_id, "attempts": attempt}
        extra += " AND ((state = %s AND kill_requested = '') OR (state = %s AND started_at = %s))"
        at = connection.ops.adapt_datetimefield_value(now)
        params = [*params, JobState.DISPATCHED.value, JobState.RUNNING.value, at]
    if not update_returns_rows():
        if not update_rows(model, where, values, (extra, params)):
            return None
        return next(iter(JOB_ROW.objects(job_id)), None)
    sql, all_params = update_sql(model, where, values, (extra, params))
    # PostgreSQL: the owner's grants in the same statement, as the job starts (as their own read did).
    grants = connection.vendor == "postgresql"
    returned = JOB_ROW.returning() + f", {owner_grants_column(Job._meta.db_table)}" * grants
    with fastsql.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {returned}", all_params)
        rows = cursor.fetchall()
    if not rows:
        return None
    job = JOB_ROW.objects_from([rows[0][: len(rows[0]) - grants]])[0]
    if grants:
        job.granted_at_start = folders_from(rows[0][-1])
    return job


def _start_statement(
    job_id: int, attempt: int, node_name: str, now: datetime, cpu_indices: Sequence[int], no_kill: bool = True
) -> tuple[type[Job], dict[str, object], dict[str, object], tuple[str, list]]:
    node_table = connection.ops.quote_name(Node._meta.db_table)
    # No kill under way (`no_kill`; a start sent again checks it itself), written so that no planner takes the
    # (kill_requested, node) index for it: PostgreSQL without statistics yet (a fresh table, a big submit
    # before autovacuum's ANALYZE) did, and read every job's entry in it for each start (1 ms at 2,000 jobs)
    # instead of the one row by its primary key.
    unkilled = "(kill_requested || '') = '' AND " if connection.vendor == "postgresql" else "kill_requested = '' AND "
    return (
        Job,
        {"id": job_id, "state": JobState.DISPATCHED, "attempts": attempt},
        # reason: a resend's "not started on ..." (housekeeping.resend_reason) is over.
        {"state": JobState.RUNNING, "started_at": now, "cpu_indices": list(cpu_indices), "reason": ""},
        (f"{unkilled * no_kill}node_id IN (SELECT id FROM {node_table} WHERE name = %s)", [node_name]),  # noqa: S608
    )


def finish(
    job_id: int,
    attempt: int,
    state: JobState,
    now: datetime,
    reason: str = "",
    retry_at: datetime | None = None,
    ran: tuple[str, datetime | None] | None = None,
    **results,
) -> bool:
    """running -> a final state (or back to queued/held, or waiting for a retry), recording what the run
    measured and the attempt in the job's history.

    A retry (`state` queued, or waiting until `retry_at`) leaves its node and
    counts one more of its retries.  An attempt its owner cancelled or held
    while it ran keeps that state: the node's report only records what the
    run measured and frees its slot (`settle_kill`).  True when the report was
    recorded either way (so the run is charged), False when the attempt was
    no longer this node's.  `ran`: the node's name and the attempt's start,
    when the caller knows them (the node that started it does); read otherwise.
    """
    values = _end_values(state, now, reason, retry_at, results)
    ran = ran or _run_facts(job_id)
    # A job that ended while its desktop's owner was back (killed while stopped) ends from `suspended`.
    if any(
        update_rows(Job, {"id": job_id, "state": started, "attempts": attempt}, values) for started in STARTED_STATES
    ):
        _add_attempt(job_id, attempt, ran, _attempt_state(state), results.get("exit_code"), reason, now)
        return True
    return settle_kill(job_id, attempt, now, ran=ran, **results) is not None


def finish_with(
    also: Sequence[tuple[str, list]],
    job_id: int,
    attempt: int,
    state: JobState,
    now: datetime,
    reason: str = "",
    retry_at: datetime | None = None,
    *,
    ran: tuple[str, datetime | None],
    **results,
) -> bool:
    """`finish` of a running (or suspended) attempt and the statements `also`, in one statement (PostgreSQL's
    data-modifying CTEs); True when it was recorded, and then so was all of `also`.

    `also`: (SQL, parameters) of each statement to run with the end, each
    acting only on a row of the CTE `ended` (the job's id, none when the
    attempt was no longer running); see `usage.charge_statements`.  False:
    nothing was written (the attempt's kill was under way, or it was no
    longer this one's): the caller records it with `finish`, which settles
    a kill.  Only where `can_finish_with()`.
    """
    values = _end_values(state, now, reason, retry_at, dict(results))
    states = ", ".join(["%s"] * len(STARTED_STATES))
    update, params = update_sql(
        Job, {"id": job_id, "attempts": attempt}, values, (f"state IN ({states})", [s.value for s in STARTED_STATES])
    )
    exit_code = results.get("exit_code")
    history, history_params = insert_select_sql(Attempt, {
        "job": job_id, "attempt": attempt, "node": ran[0], "state": _attempt_state(state),
        "exit_code": exit_code if isinstance(exit_code, int) else None, "reason": reason, "started_at": ran[1],
        "finished_at": now,
    }, "ended")  # fmt: skip
    parts = [f"ended AS ({update} RETURNING id)", f"history AS ({history})"]
    parts += [f"also{i} AS ({sql})" for i, (sql, _) in enumerate(also)]
    all_params = [*params, *history_params, *(p for _, also_params in also for p in also_params)]
    with fastsql.cursor() as cursor:
        # Every value is a parameter; the text is made of model columns and this module's own SQL.
        cursor.execute(f"WITH {', '.join(parts)} SELECT COUNT(*) FROM ended", all_params)  # noqa: S608
        return cursor.fetchone()[0] > 0


def can_finish_with() -> bool:
    """True where `finish_with` works: PostgreSQL, whose CTEs may write."""
    return connection.vendor == "postgresql"


def _end_values(
    state: JobState, now: datetime, reason: str, retry_at: datetime | None, results: dict[str, object]
) -> dict[str, object]:
    # What `finish` writes to the job's row (`results`: what the run measured; its hold_code is taken out).
    values: dict[str, object] = {
        "state": state,
        "finished_at": now if state in FINAL_STATES else None,
        "reason": reason,
    }
    if state in (JobState.QUEUED, JobState.WAITING, JobState.HELD):
        # A run again (or held by its on_exit_hold, to run again when released): it counts as one of its
        # own retries, never as a lost run (`requeue`'s limit).
        values.update(node=None, gpu_indices=[], cpu_indices=[], retries=Add(1), retry_at=retry_at,
                      started_at=None, suspended_seconds=0.0)  # fmt: skip
    if state == JobState.HELD:
        values.update(held_at=now, hold_code=results.pop("hold_code", HOLD_BY_POLICY), num_holds=Add(1))
    return {**values, "kill_requested": "", "suspended_at": None, **results}


def _attempt_state(state: JobState) -> str:
    # How the attempt ended, in its history: a retry's run failed; held: "held".
    return JobState.FAILED if state in (JobState.QUEUED, JobState.WAITING) else state


def _run_facts(job_id: int) -> tuple[str, datetime | None]:
    # The node and start of the run about to be recorded (read first: a retry clears the node).
    row = Job.objects.filter(id=job_id).values_list("node__name", "started_at").first()
    return (row[0] or "", row[1]) if row else ("", None)


def _add_attempt(job_id: int, attempt: int, ran: tuple[str, datetime | None], state: str, exit_code: object,
                 reason: str, now: datetime) -> None:  # fmt: skip
    exit_code = exit_code if isinstance(exit_code, int) else None
    # Every column given (the history's row has no default): one INSERT written out, no instance made.
    insert_row(Attempt, {
        "job": job_id, "attempt": attempt, "node": ran[0], "state": state,
        "exit_code": exit_code, "reason": reason, "started_at": ran[1], "finished_at": now,
    })  # fmt: skip


def settle_kill(
    job_id: int, attempt: int, now: datetime, ran: tuple[str, datetime | None] | None = None, **results
) -> JobState | None:
    """The kill of an attempt its owner cancelled or held while it ran is done: free its slot.

    The state the owner gave it stays (a cancelled job's end is never turned
    back into succeeded or failed); what the run measured is recorded on a
    cancelled job, whose `finished_at` becomes the moment it really stopped.
    Returns the job's state, or None when this attempt had no kill under way.
    """
    ran = ran or _run_facts(job_id)
    killing = Job.objects.filter(id=job_id, attempts=attempt, kill_requested__in=KILLING)
    settled = None
    if killing.filter(state=JobState.CANCELLED).update(kill_requested="", finished_at=now, **results):
        settled = JobState.CANCELLED
    elif killing.filter(state=JobState.HELD).update(kill_requested="", node=None):
        settled = JobState.HELD
    if settled:
        reason = CANCELLED_REASON if settled == JobState.CANCELLED else HELD_REASON
        _add_attempt(job_id, attempt, ran, settled, results.get("exit_code"), reason, now)
    return settled


def requeue(job_id: int, attempt: int, reason: str, now: datetime, hold: bool = False) -> JobState | None:
    """A dispatched or running attempt that did not end on its own goes back to the queue.

    After DCT_MAX_ATTEMPTS dispatches it fails instead, with `reason`.  An
    attempt cancelled or held by its owner stays so (its slot is freed).
    Returns the new state, or None if the attempt was no longer active.
    """
    settled = settle_kill(job_id, attempt, now)
    if settled:
        return settled
    active = Job.objects.filter(id=job_id, state__in=ACTIVE_STATES, attempts=attempt)
    ran = _run_facts(job_id)
    moved = None
    if hold:
        if active.update(
            state=JobState.HELD, reason=HELD_REASON, kill_requested="", node=None, num_holds=F("num_holds") + 1
        ):
            moved = JobState.HELD
    # The limit counts lost runs only: the runs a job's own retries asked for are not the node's fault.
    elif active.filter(attempts__gte=F("retries") + settings.DCT_MAX_ATTEMPTS).update(
        state=JobState.FAILED, finished_at=now, reason=f"{reason} (after {attempt} attempts)"
    ):
        moved = JobState.FAILED
    elif active.update(
        state=JobState.QUEUED,
        reason=reason,
        started_at=None,
        gpu_indices=[],
        cpu_indices=[],
        suspended_at=None,
        suspended_seconds=0.0,
    ):
        moved = JobState.QUEUED
    if moved and ran[1] is not None:  # it had started: keep the run in the history
        _add_attempt(job_id, attempt, ran, "lost" if moved != JobState.HELD else moved, None, reason, now)
    return moved


def suspend(job_id: int, attempt: int, now: datetime, reason: str = "") -> bool:
    """running -> suspended: its desktop node's owner came back and its processes are stopped (`reason`
    says so while it lasts)."""
    return bool(
        Job.objects.filter(id=job_id, state=JobState.RUNNING, attempts=attempt).update(
            state=JobState.SUSPENDED, suspended_at=now, reason=reason
        )
    )


def resume(job_id: int, attempt: int, now: datetime) -> bool:
    """suspended -> running: the owner left again; the time it was stopped is added to `suspended_seconds`
    (not charged to fair share, not counted against max_runtime)."""
    row = Job.objects.filter(id=job_id, state=JobState.SUSPENDED, attempts=attempt).values_list("suspended_at")
    found = row.first()
    if found is None:
        return False
    since = found[0]
    stopped = max((now - since).total_seconds(), 0.0) if since else 0.0
    return bool(
        Job.objects.filter(id=job_id, state=JobState.SUSPENDED, attempts=attempt, suspended_at=since).update(
            state=JobState.RUNNING, suspended_at=None, suspended_seconds=F("suspended_seconds") + stopped, reason=""
        )
    )


def vacate(job_id: int, attempt: int, reason: str, now: datetime) -> JobState | None:
    """suspended (or running) -> queued: a desktop's owner came back for good ("I need it now", or
    suspended past DCT_SUSPEND_MAX).  Not the job's fault nor the node's: the attempt is not used up
    (`attempts` goes back to what it was before this dispatch, so DCT_MAX_ATTEMPTS never counts it);
    the run is kept in its history as `vacated`.  An attempt its owner cancelled or held meanwhile stays
    so.  Returns the new state, or None if the attempt was no longer this one.
    """
    settled = settle_kill(job_id, attempt, now)
    if settled:
        return settled
    ran = _run_facts(job_id)
    moved = Job.objects.filter(id=job_id, state__in=STARTED_STATES, attempts=attempt, kill_requested="").update(
        state=JobState.QUEUED,
        reason=reason,
        attempts=F("attempts") - 1,
        node=None,
        gpu_indices=[],
        cpu_indices=[],
        started_at=None,
        dispatched_at=None,
        suspended_at=None,
        suspended_seconds=0.0,
    )
    if not moved:
        return None
    _add_attempt(job_id, attempt, ran, "vacated", None, reason, now)
    return JobState.QUEUED


CANCELLED_REASON = "cancelled by its owner"
HELD_REASON = "held by its owner"
# What each action changes; anything else is left alone (and counted as not changed).
CANCELLABLE = (JobState.WAITING, JobState.QUEUED, JobState.HELD, JobState.DISPATCHED, *STARTED_STATES)
HOLDABLE = (JobState.WAITING, JobState.QUEUED, JobState.DISPATCHED, *STARTED_STATES)


def cancel_jobs(jobs: QuerySet[Job], now: datetime, reason: str = CANCELLED_REASON) -> int:
    """Cancel every job of `jobs` that has not ended, in one UPDATE; returns how many changed.

    Each shows `cancelled` at once.  A running one is marked to be killed by
    its node (within a couple of seconds) and keeps its slot until that kill
    is done (`settle_kill`); a held one whose kill is under way stays marked.
    """
    return jobs.filter(state__in=CANCELLABLE).update(
        # Before `state`: MySQL evaluates SET assignments left to right, on the new values.
        kill_requested=Case(
            When(Q(state__in=STARTED_STATES) | Q(kill_requested__in=KILLING), then=Value(KillRequest.CANCEL.value)),
            default=Value(""),
        ),
        state=JobState.CANCELLED,
        finished_at=now,
        reason=reason,
        acted_at=now,
    )


def hold_jobs(
    jobs: QuerySet[Job], now: datetime, reason: str = HELD_REASON, code: int = HOLD_BY_USER, subcode: int = 0
) -> int:
    """Hold every queued, dispatched or running job of `jobs`, in one UPDATE; returns how many changed.

    A running one is marked to be stopped by its node and keeps its node and
    slot until it has stopped; the others leave their node at once.  `code`
    and `subcode`: HTCondor's HoldReasonCode (1: its owner; 3: periodic_hold).
    """
    running = Q(state__in=STARTED_STATES)
    return jobs.filter(state__in=HOLDABLE).update(
        # Before `state` (MySQL assigns left to right).
        kill_requested=Case(When(running, then=Value(KillRequest.HOLD.value)), default=Value("")),
        node=Case(When(running, then=F("node")), default=None),
        state=JobState.HELD,
        reason=reason,
        acted_at=now,
        hold_code=code,
        hold_subcode=subcode,
        held_at=now,
        num_holds=F("num_holds") + 1,
    )


def release_jobs(jobs: QuerySet[Job], now: datetime, reason: str = "") -> int:
    """held -> queued (waiting, with a dependency not yet met) for every job of `jobs` that has stopped,
    in one UPDATE; returns how many changed.

    A held job whose process is still being stopped is left held: released
    now, it could be dispatched while its last attempt still runs.
    """
    waits = (
        Exists(Dependency.objects.filter(child_id=OuterRef("pk"), resolved=False))
        | Q(start_after__gt=now)
        | Q(max_running__isnull=False)
    )
    return jobs.filter(state=JobState.HELD, kill_requested="").update(
        # A job with a dependency not yet met, a start time to come or a throttle goes back to waiting,
        # not to the queue (the housekeeping queues it when all hold).
        state=Case(When(waits, then=Value(JobState.WAITING.value)), default=Value(JobState.QUEUED.value)),
        reason=reason,
        acted_at=now,
        hold_code=None,
        hold_subcode=None,
    )


def _one(act: Callable[[QuerySet[Job], datetime], int], verb: str) -> Callable[[Job], bool]:
    def act_on_one(job: Job, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        changed = act(Job.objects.filter(id=job.id), now) > 0
        if changed and job.state not in STARTED_STATES:  # a running job's node writes the event of its end
            log_action(job, verb, now)
        return changed

    act_on_one.__doc__ = f"`{act.__name__}` for one job: True when it changed."
    return act_on_one


cancel = _one(cancel_jobs, "cancel")
hold = _one(hold_jobs, "hold")
release = _one(release_jobs, "release")


def log_action(job: Job, verb: str, now: datetime) -> None:
    """An owner's cancel, hold or release of a job no node runs, in its submission's HTCondor event log
    (when the file asked for one, `log = NAME`); a running job's node writes the event of its end."""
    log_event(job, lambda cluster, process, when: eventlog.for_action(verb, cluster, process, when), now)


def log_event(job: Job, event: Callable[[int, int, datetime], str], now: datetime) -> None:
    """`event(cluster, process, now)` in the submission's HTCondor event log, when its file asked for one."""
    folder = Submission(id=job.submission_id).folder()
    if streams.of(job).log:
        try:
            eventlog.append(folder, event(job.submission_id, job.process, now))
        except OSError as exc:  # the job's state is what counts; its log is a copy of it for HTCondor's tools
            log.warning("job %s: could not write its event log: %s", job.id, exc)


@dataclass(frozen=True)
class Control:
    """A user's action on jobs (cancel / hold / release), as the CLI and the API offer it."""

    act: Callable[[Job], bool]  # one job: True when it changed
    act_many: Callable[[QuerySet[Job], datetime], int]  # one UPDATE: how many changed
    done: str  # what the CLI says when it worked
    refusal: str  # why it did not, after "job N is STATE: "

    def refusal_for(self, job: Job) -> str:
        """Why this action left `job` as it is, for a person."""
        if job.state == JobState.HELD and job.kill_requested and self.act_many is release_jobs:
            return f"job {job.id} is held and still being stopped on its node: release it in a moment"
        return f"job {job.id} is {job.state}: {self.refusal}"


CONTROLS = {
    "cancel": Control(cancel, cancel_jobs, "cancelled (a running job stops within 2 seconds)", "it has already ended"),
    "hold": Control(hold, hold_jobs, "held", "only waiting, queued, dispatched or running jobs can be held"),
    "release": Control(release, release_jobs, "released", "only held jobs can be released"),
}


def requeue_node_jobs(node: Node, reason: str, now: datetime, states: tuple = ACTIVE_STATES) -> int:
    """Send the node's jobs in `states` back to the queue (or to failed past the attempt limit).

    The node's processes are gone (lost, or restarted): the kills under way
    there are done too, and free their slots.
    """
    killing = Job.objects.filter(node=node, kill_requested__in=KILLING)
    killing.filter(state=JobState.CANCELLED).update(kill_requested="")
    killing.filter(state=JobState.HELD).update(kill_requested="", node=None)
    moved = 0
    for job_id, attempt in Job.objects.filter(node=node, state__in=states).values_list("id", "attempts"):
        if requeue(job_id, attempt, reason, now):
            moved += 1
    return moved
