"""The DAG engine: a scheduler step that runs each DAG's nodes as jobs, parents first (DAGMan's rules are
in `dagsteps.py`, decided there; this module reads the rows and acts).

One step per round (`advance_dags`): nodes whose running phase (PRE script, job, POST script) has no job
left unfinished are settled (one query finds them all; then one read of each such node's jobs), then
each running DAG is planned from one read of its nodes.  Every change is a conditional UPDATE on the
node (its state, phase and first job id in the WHERE clause), made in the same transaction as the jobs
it queues: two schedulers, or one killed half-way, never queue a phase twice.  A user's script never
runs here: PRE and POST scripts are jobs of their own, on nodes.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from dctoolkit.jobs import transitions
from dctoolkit.jobs.intake import dag as language
from dctoolkit.jobs.intake.dagqueue import (
    PreparedDag,
    StagedFiles,
    prepare_node,
    queue_dag,
    script_of,
    script_submission,
)
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.intake.queue import prepare, queue
from dctoolkit.jobs.models import FINAL_STATES, Dag, DagNode, DagState, Job, JobState, Submission
from dctoolkit.jobs.scheduling.dagsteps import (
    Next,
    NodeFacts,
    NodeRules,
    after_phase,
    first_phase,
    plan_dag,
)
from dctoolkit.lib.fastsql import Compiled

log = logging.getLogger(__name__)

# Nodes settled, and DAGs planned, per round at most (the rest next round).
BATCH = 200
# Plans of one DAG in a row (a NOOP node's children start in the same round, and theirs).
PLAN_STEPS = 4
# phase_from of a phase that queued no job (`queue 0`): no job id reaches it, so the phase has ended.
NO_JOBS = 2**62


def advance_dags(now: datetime) -> int:
    """One step of the running DAGs; returns how many nodes or DAGs changed.

    A DAG is planned when one of its nodes ended a phase (a job's end is what moves a DAG on), and every
    running DAG once per FULL_PLAN_SECONDS, in case a scheduler stopped between a node's end and its
    DAG's plan: a round reads the nodes of the DAGs that moved, not of every DAG.
    """
    global _planned_all_at
    settled, touched = settle_phases(now)
    every = _planned_all_at is None or (now - _planned_all_at).total_seconds() >= FULL_PLAN_SECONDS
    if every:
        _planned_all_at = now
        running = Dag.objects.filter(state=DagState.RUNNING).order_by("id").values_list("id", flat=True)
        touched |= set(running[:BATCH])
    did = settled + sum(plan_steps(dag_id, now) for dag_id in sorted(touched))
    if did:
        log.info("dags: %s nodes or DAGs moved on", did)
    return did


# Every running DAG is planned at least this often (seconds), whatever ended.
FULL_PLAN_SECONDS = 30.0
_planned_all_at: datetime | None = None


def settle_phases(now: datetime) -> tuple[int, set[int]]:
    """Nodes whose running phase has ended (no job of it unfinished) go on to their next phase or end.
    Returns how many moved, and the DAGs they belong to."""
    if not _ANY_ENDED_PHASE.rows():  # most rounds: one compiled probe, no queryset built
        return 0, set()
    ended = _ended_phases().select_related("dag", "dag__owner").order_by("id")[:BATCH]
    moved, dags = 0, set()
    for node in ended:
        if settle(node, now):
            moved += 1
            dags.add(node.dag_id)
    return moved, dags


def _ended_phases() -> QuerySet[DagNode]:
    """Running DAGs' nodes whose running phase has no unfinished job left."""
    unfinished = Job.objects.filter(dag_node=OuterRef("pk"), id__gte=OuterRef("phase_from")).exclude(
        state__in=FINAL_STATES
    )
    return (
        DagNode.objects.filter(state=JobState.QUEUED, dag__state=DagState.RUNNING)
        .exclude(phase="")
        .exclude(Exists(unfinished))
    )


_ANY_ENDED_PHASE = Compiled(lambda: _ended_phases().order_by().values_list("id")[:1])


def settle(node: DagNode, now: datetime) -> int:
    """Apply the end of a node's running phase; 1 when it moved on (0: another scheduler did it)."""
    rows = list(Job.objects.filter(dag_node=node, id__gte=node.phase_from).order_by("id").values_list(
        "id", "state", "exit_code"))  # fmt: skip
    ok = all(state == JobState.SUCCEEDED for _, state, _ in rows)
    codes = [code for _, state, code in rows if state != JobState.SUCCEEDED and code is not None]
    exit_value = 0 if ok else (codes[0] if codes else None)
    aborted = bool(node.dag.aborted) and not node.is_final
    nxt = after_phase(rules_of(node), node.phase, ok, exit_value, node.retries, aborted)
    if any(state == JobState.CANCELLED for _, state, _ in rows) and not aborted:
        # A cancel is never retried (as a job's own retries are not), and no POST script judges it.
        nxt = Next("fail", exit_value=None, note=f"node {node.name}: its {node.phase} job was cancelled")
    facts: dict[str, object] = {}
    if node.phase == "pre":
        facts["pre_return"] = exit_value
    elif node.phase == "job":
        facts["job_return"] = exit_value if exit_value is not None else -1
        facts["job_ids"] = f"{rows[0][0]}.0" if rows else ""
    claim = {"state": JobState.QUEUED, "phase": node.phase, "phase_from": node.phase_from}
    return apply(node, nxt, claim, now, facts)


def rules_of(node: DagNode) -> NodeRules:
    pre, post = script_of(node.pre), script_of(node.post)
    return NodeRules(
        has_pre=pre is not None,
        has_post=post is not None,
        noop=node.noop,
        pre_skip=node.pre_skip,
        abort_on=node.abort_on,
        abort_return=node.abort_return,
        max_retries=node.max_retries,
        unless_exit=node.unless_exit,
        pre_defer=(pre.defer_status, pre.defer_seconds) if pre and pre.defer_status is not None else None,
        post_defer=(post.defer_status, post.defer_seconds) if post and post.defer_status is not None else None,
    )


def apply(node: DagNode, nxt: Next, claim: dict, now: datetime, facts: dict | None = None) -> int:
    """Do what `nxt` says for `node`, if the node is still as `claim` says; 1 when done."""
    facts = dict(facts or {})
    for key, value in facts.items():
        setattr(node, key, value)
    mine = DagNode.objects.filter(id=node.id, **claim)
    if nxt.action == "run":
        return submit_phase(node, nxt.phase, claim, now, facts, delay_seconds=nxt.delay_seconds)
    if nxt.action == "retry":
        retries = node.retries + 1
        node.retries = retries
        first = first_phase(rules_of(node))
        if first.action != "run":  # a NOOP node with no scripts cannot fail: nothing to run again
            return apply(node, first, claim, now, {**facts, "retries": retries})
        return submit_phase(node, first.phase, claim, now, {**facts, "retries": retries, "reason": nxt.note})
    state = JobState.SUCCEEDED if nxt.action == "succeed" or nxt.exit_value == 0 else JobState.FAILED
    if nxt.action == "fail" and nxt.exit_value is None:
        state = JobState.CANCELLED
    with transaction.atomic():
        if not mine.update(state=state, phase="", exit_code=nxt.exit_value, reason=nxt.note, **facts):
            return 0
        if nxt.action == "abort":
            abort(node, nxt, now)
    return 1


def abort(node: DagNode, nxt: Next, now: datetime) -> None:
    """ABORT-DAG-ON: the DAG stops (its return value is `nxt.dag_return`); every other job of it not ended
    is cancelled, in one UPDATE; the FINAL node still runs."""
    reason = f"ABORT-DAG-ON {node.name} {nxt.exit_value}: node {node.name} exited {nxt.exit_value}"
    if Dag.objects.filter(id=node.dag_id, aborted="").update(aborted=reason, exit_code=nxt.dag_return):
        transitions.cancel_jobs(Job.objects.filter(dag_id=node.dag_id, dag_node__is_final=False), now)
        log.info("dag %s aborted: %s", node.dag_id, reason)


def submit_phase(node: DagNode, phase: str, claim: dict, now: datetime, facts: dict, delay_seconds: int = 0) -> int:
    """Queue the jobs of `phase` (pre, job, post) of `node`, and mark the node so, in one transaction.

    A submit file that is refused now (a node whose resources no machine offers any more) fails the node
    with that reason."""
    with transaction.atomic():
        if not DagNode.objects.filter(id=node.id, **claim).update(
            state=JobState.QUEUED, phase=phase, phase_from=NO_JOBS, **facts
        ):
            return 0
        try:
            jobs = queue_phase(node, phase, delay_seconds)
        except (SubmissionError, OSError) as exc:
            # Refused now (a request no node offers any more), or its stored files are gone: the node fails
            # with why, rather than blocking the DAGs behind it round after round.
            reason = (
                str(exc) if isinstance(exc, SubmissionError) else f"its files could not be read from storage ({exc})"
            )
            DagNode.objects.filter(id=node.id).update(state=JobState.FAILED, phase="", reason=reason[:2000])
            return 1
        if jobs:
            ids = [job.id for job in jobs]
            # One mail per DAG (notify.py): its jobs and their submissions send none of their own.
            Job.objects.filter(id__in=ids).update(dag_id=node.dag_id, dag_node_id=node.id, email="")
            Submission.objects.filter(id__in={job.submission_id for job in jobs}).update(email="")
            DagNode.objects.filter(id=node.id).update(phase_from=min(ids))
    return 1


def queue_phase(node: DagNode, phase: str, delay_seconds: int = 0) -> list[Job]:
    """The jobs of one phase, queued from the DAG's stored files; raises SubmissionError."""
    dag = node.dag
    files = StagedFiles(dag.folder(), dag.files, node.directory)
    if phase == "job":
        return queue(prepare_node(node, files, dag.source_name), dag.owner)
    script = script_of(node.pre if phase == "pre" else node.post)
    assert script is not None  # a phase is run only when the node has that script
    values = {
        "JOB": node.name,
        "RETRY": str(node.retries),
        "MAX_RETRIES": str(node.max_retries),
        "RETURN": str(node.job_return if node.job_return is not None else -1),
        "JOBID": node.job_ids,
        "PRE_SCRIPT_RETURN": str(node.pre_return if node.pre_return is not None else -1),
    }
    words = language.script_words(script, values)
    text = script_submission(f"{node.name}.{phase}", script, words, delay_seconds)
    return queue(prepare(text, f"{dag.source_name}:{script.line}", files), dag.owner)


def plan_steps(dag_id: int, now: datetime) -> int:
    """`step_dag` until the DAG is still: a node that ends as it starts (NOOP, DONE, refused) lets the next
    ones start in the same round.  At most PLAN_STEPS plans."""
    did = 0
    for _ in range(PLAN_STEPS):
        changed = step_dag(dag_id, now)
        if not changed:
            break
        did += changed
    return did


def step_dag(dag_id: int, now: datetime) -> int:
    """Start the DAG's nodes that are ready, give up those that never can be, or end the DAG."""
    dag = Dag.objects.select_related("owner").filter(id=dag_id, state=DagState.RUNNING).first()
    if dag is None:
        return 0
    rows = list(DagNode.objects.filter(dag=dag).order_by("id"))
    facts = [NodeFacts(n.name, n.state, tuple(n.parents), n.category, n.priority, n.is_final) for n in rows]
    plan = plan_dag(facts, dag.max_jobs, dag.exit_code if dag.aborted else None)
    did = 0
    for name, reason in plan.never.items():
        did += DagNode.objects.filter(dag=dag, name=name, state=JobState.WAITING).update(
            state=JobState.CANCELLED, reason=reason
        )
    by_name = {n.name: n for n in rows}
    for name in plan.start:
        node = by_name[name]
        node.dag = dag
        did += apply(node, first_phase(rules_of(node)), {"state": JobState.WAITING}, now)
    if plan.end is not None:
        did += Dag.objects.filter(id=dag.id, state=DagState.RUNNING).update(
            state=plan.end.state, exit_code=plan.end.exit_code, finished_at=now
        )
    return did


def rerun_dag(dag: Dag, now: datetime) -> int:
    """DAGMan's rescue DAG: an ended DAG runs again what did not succeed (and its FINAL node); returns
    how many nodes go back to waiting, or -1 when the DAG has not ended."""
    with transaction.atomic():
        if (
            not Dag.objects.filter(id=dag.id)
            .exclude(state=DagState.RUNNING)
            .update(state=DagState.RUNNING, aborted="", exit_code=None, finished_at=None, notified=False)
        ):
            return -1
        again = DagNode.objects.filter(dag=dag).exclude(state=JobState.SUCCEEDED, is_final=False)
        count = again.update(
            state=JobState.WAITING, phase="", phase_from=0, retries=0, exit_code=None, reason="",
            pre_return=None, job_return=None, job_ids="",
        )  # fmt: skip
    plan_steps(dag.id, now)  # its first nodes are queued at once, as at submission
    return count


def submit_dag(prepared: PreparedDag, owner: AbstractBaseUser, now: datetime) -> tuple[Dag, list[Job]]:
    """Store a checked DAG and start it at once: its first nodes' jobs are queued before this returns
    (the jobs answered), the rest as their parents end."""
    dag = queue_dag(prepared, owner)
    plan_steps(dag.id, now)
    return dag, list(Job.objects.filter(dag=dag).select_related("owner", "node", "dag_node").order_by("id"))
