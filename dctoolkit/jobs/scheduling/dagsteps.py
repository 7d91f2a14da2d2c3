"""What a DAG does next (pure): which nodes start, which can never run, what a node does when a phase ends,
and how the DAG ends.  DAGMan's rules, as its manual gives them:

- a node runs once every parent succeeded, higher PRIORITY first, at most MAXJOBS of a CATEGORY at once;
  a node below a failed one never runs;
- a node is its PRE script, its job (none for NOOP), its POST script; PRE failing fails the node (its POST
  does not run), PRE exiting with PRE_SKIP's value skips job and POST and the node succeeds; with a POST
  script, the POST's exit status is the node's, whatever the job did;
- ABORT-DAG-ON is looked at before RETRY; RETRY runs the whole node again unless its exit value is
  UNLESS-EXIT's (the job retry rule of `retries.judge_exit`, at node level);
- the FINAL node runs last, whatever happened (also after an abort), and decides the DAG's outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dctoolkit.jobs.intake.dag import topological
from dctoolkit.jobs.retries import RetryPolicy, judge_exit

WAITING, QUEUED, SUCCEEDED, FAILED, CANCELLED = "waiting", "queued", "succeeded", "failed", "cancelled"
ENDED = (SUCCEEDED, FAILED, CANCELLED)
# $RETURN of a node whose job ended with no exit status (cancelled, killed for a limit), as DAGMan's -1.
NO_EXIT = -1


@dataclass(frozen=True)
class NodeFacts:
    """A node as the plan reads it: `state` is waiting, queued (submitted, not ended) or an end state."""

    name: str
    state: str
    parents: tuple[str, ...] = ()
    category: str = ""
    priority: int = 0
    is_final: bool = False


@dataclass(frozen=True)
class DagEnd:
    state: str  # succeeded or failed
    exit_code: int


@dataclass(frozen=True)
class Plan:
    start: list[str] = field(default_factory=list)
    never: dict[str, str] = field(default_factory=dict)  # node -> why it can never run (its end: cancelled)
    end: DagEnd | None = None


def plan_dag(nodes: Sequence[NodeFacts], max_jobs: Mapping[str, int], abort_return: int | None = None) -> Plan:
    """The next step of a DAG: nodes to start, nodes that can never run, or its end.  `abort_return` is set
    (the DAG's return value) once ABORT-DAG-ON has stopped it."""
    by_name = {n.name: n for n in nodes}
    never = _futile(nodes, by_name, aborted=abort_return is not None)
    state = {n.name: CANCELLED if n.name in never else n.state for n in nodes}
    main = [n for n in nodes if not n.is_final]
    active = [n for n in main if state[n.name] == QUEUED]
    ready = [n for n in main if state[n.name] == WAITING and all(state[p] == SUCCEEDED for p in n.parents)]
    start = _throttled(sorted(ready, key=lambda n: -n.priority), active, max_jobs)
    if active or ready or any(state[n.name] == WAITING for n in main):
        return Plan(start=start, never=never)
    final = next((n for n in nodes if n.is_final), None)
    if final is not None and final.state == WAITING:
        return Plan(start=[final.name], never=never)
    if final is not None and final.state == QUEUED:
        return Plan(never=never)
    return Plan(never=never, end=_end(main, state, final, abort_return))


def _futile(nodes: Sequence[NodeFacts], by_name: Mapping[str, NodeFacts], aborted: bool) -> dict[str, str]:
    """Waiting nodes (not the FINAL one) that can never run: below a failed or cancelled node, or all of
    them once the DAG was aborted.  One pass, parents first."""
    never: dict[str, str] = {}
    for name in topological({n.name: n.parents for n in nodes}):
        node = by_name[name]
        if node.is_final or node.state != WAITING:
            continue
        if aborted:
            never[name] = "the DAG was aborted (ABORT-DAG-ON) before this node ran"
            continue
        bad = next((p for p in node.parents if by_name[p].state in (FAILED, CANCELLED) or p in never), None)
        if bad is not None:
            what = "can never run" if bad in never else by_name[bad].state
            never[name] = f"parent node {bad} {what}: this node never runs"
    return never


def _throttled(ready: list[NodeFacts], active: list[NodeFacts], max_jobs: Mapping[str, int]) -> list[str]:
    running: dict[str, int] = {}
    for node in active:
        running[node.category] = running.get(node.category, 0) + 1
    start = []
    for node in ready:
        limit = max_jobs.get(node.category, 0) if node.category else 0
        if limit and running.get(node.category, 0) >= limit:
            continue
        running[node.category] = running.get(node.category, 0) + 1
        start.append(node.name)
    return start


def _end(main: list[NodeFacts], state: Mapping[str, str], final: NodeFacts | None, abort: int | None) -> DagEnd:
    if abort is not None:
        return DagEnd(SUCCEEDED if abort == 0 else FAILED, abort)
    ok = final.state == SUCCEEDED if final is not None else all(state[n.name] == SUCCEEDED for n in main)
    return DagEnd(SUCCEEDED if ok else FAILED, 0 if ok else 1)


# --- one node ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRules:
    """What the DAG file says about a node's run."""

    has_pre: bool = False
    has_post: bool = False
    noop: bool = False
    pre_skip: int | None = None
    abort_on: int | None = None
    abort_return: int | None = None
    max_retries: int = 0
    unless_exit: int | None = None
    pre_defer: tuple[int, int] | None = None  # SCRIPT DEFER: (exit status, seconds)
    post_defer: tuple[int, int] | None = None


@dataclass(frozen=True)
class Next:
    """What a node does next: `run` a phase (pre, job, post; `delay_seconds` for DEFER), or end:
    `succeed`, `retry` (the whole node again), `fail`, `abort` (the DAG, returning `dag_return`)."""

    action: str
    phase: str = ""
    exit_value: int | None = None
    delay_seconds: int = 0
    dag_return: int | None = None
    note: str = ""


def first_phase(rules: NodeRules) -> Next:
    """The phase a node starts with."""
    if rules.has_pre:
        return Next("run", "pre")
    return after_job(rules, ok=True, exit_value=0) if rules.noop else Next("run", "job")


def after_phase(rules: NodeRules, phase: str, ok: bool, exit_value: int | None, retries: int, aborted: bool) -> Next:
    """What a node does when the jobs of `phase` have ended: `ok` when all succeeded; `exit_value` the
    script's exit status or the job's (the first non-zero of its jobs; None: ended without one)."""
    if aborted:
        return Next("fail", exit_value=exit_value, note="the DAG was aborted (ABORT-DAG-ON)")
    value = NO_EXIT if exit_value is None else exit_value
    if phase in ("pre", "post"):
        defer = rules.pre_defer if phase == "pre" else rules.post_defer
        if defer is not None and value == defer[0]:
            return Next(
                "run", phase, delay_seconds=defer[1], note=f"{phase.upper()} script deferred (DEFER {defer[0]})"
            )
    if phase == "pre":
        if rules.pre_skip is not None and value == rules.pre_skip:
            return _ended(rules, True, 0, retries, note=f"PRE_SKIP: the PRE script exited {value}")
        if not ok or value != 0:
            return _ended(rules, False, value, retries, note=f"PRE script failed (exit status {value})")
        return after_job(rules, ok=True, exit_value=0) if rules.noop else Next("run", "job")
    if phase == "job":
        return after_job(rules, ok, value, retries)
    return _ended(
        rules, ok and value == 0, value, retries, note="" if value == 0 else f"POST script exit status {value}"
    )


def after_job(rules: NodeRules, ok: bool, exit_value: int, retries: int = 0) -> Next:
    """After the node's job: its POST script (which decides), or the node's end."""
    if rules.has_post:
        return Next("run", "post", exit_value=exit_value)
    return _ended(rules, ok, exit_value if not ok or exit_value else 0, retries, note="" if ok else "its job failed")


def _ended(rules: NodeRules, ok: bool, value: int, retries: int, note: str = "") -> Next:
    if not ok and value == 0:
        value = 1  # failed without a status (cancelled, a limit): the node's exit value is not success
    if rules.abort_on is not None and value == rules.abort_on:
        dag_return = rules.abort_return if rules.abort_return is not None else value
        return Next("abort", exit_value=value, dag_return=dag_return, note=f"ABORT-DAG-ON: exit value {value}")
    if ok:
        return Next("succeed", exit_value=value, note=note)
    verdict = judge_exit(value, RetryPolicy(max_retries=rules.max_retries, retry_until=rules.unless_exit), retries)
    if verdict.retry:
        return Next("retry", exit_value=value, note=f"{note}; RETRY {retries + 1} of {rules.max_retries}".lstrip("; "))
    more = f" ({verdict.note.replace('retry_until', 'UNLESS-EXIT')})" if verdict.note else ""
    return Next("fail", exit_value=value, note=f"{note}{more}")
