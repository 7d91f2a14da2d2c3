"""The scheduler's I/O against Django's test database: what a pass claims, and when it plans again.

Sending is replaced by a list (Redis is the integration tests' business);
everything else is the real code on the real database.
"""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.scheduling import dispatch
from dctoolkit.lib import fastsql
from dctoolkit.nodes.models import Node, NodeState


@pytest.fixture
def sent(monkeypatch):
    """The (job id, attempt, node) messages a pass sends."""
    messages = []
    monkeypatch.setattr(dispatch, "send_runs", lambda sends: messages.extend(sends) or len(sends))
    return messages


def make_node(name: str, slots: int = 1) -> Node:
    now = timezone.now()
    return Node.objects.create(
        name=name, state=NodeState.ONLINE, slots=slots, cpus=slots, threads=slots, memory_total_mb=4096,
        memory_available_mb=4096, sandbox=True, last_heartbeat=now,
    )  # fmt: skip


def queue_job(owner) -> Job:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    return Job.objects.create(submission=sub, owner=owner, name="t", executable="t.sh", submitted_at=timezone.now())


def test_a_pass_claims_a_queued_job_for_a_free_node_and_sends_it_there(alice, sent):
    make_node("node-1")
    job = queue_job(alice)
    assert dispatch.schedule_pass(timezone.now()) == 1
    job.refresh_from_db()
    assert (job.state, job.node.name, job.attempts) == (JobState.DISPATCHED, "node-1", 1)
    assert sent == [(job.id, 1, "node-1", 1)]
    assert dispatch.schedule_pass(timezone.now()) == 0, "the node is full now"


def test_a_node_drained_after_the_plan_was_made_gets_no_job_from_it(alice, sent):
    make_node("node-1")
    job = queue_job(alice)
    now = timezone.now()
    plan = dispatch.plan_pass(now)
    assert [a.node for a in plan.assignments] == ["node-1"]
    Node.objects.filter(name="node-1").update(drained=True)  # between the plan and the claim
    assert dispatch.carry_out(plan, now) == 0
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.node is None
    assert sent == []


def test_a_plan_overtaken_by_a_drain_is_made_again_for_the_nodes_still_taking_jobs(alice, sent):
    make_node("node-1")
    make_node("node-2")
    job = queue_job(alice)
    now = timezone.now()
    plan = dispatch.plan_pass(now)
    (planned,) = [a.node for a in plan.assignments]
    other = "node-2" if planned == "node-1" else "node-1"
    Node.objects.filter(name=planned).update(drained=True)
    assert dispatch.carry_out(plan, now) == 1
    job.refresh_from_db()
    assert job.node.name == other and sent == [(job.id, 1, other, 1)]


def test_a_plan_overtaken_by_another_pass_does_not_overfill_the_node(alice, sent):
    make_node("node-1")
    first, second = queue_job(alice), queue_job(alice)
    now = timezone.now()
    stale = dispatch.plan_pass(now)  # made while node-1 was free
    assert dispatch.schedule_pass(now) == 1  # another pass fills it first
    assert dispatch.carry_out(stale, now) == 0
    states = dict(Job.objects.values_list("id", "state"))
    assert states == {first.id: JobState.DISPATCHED, second.id: JobState.QUEUED}


def test_a_job_edited_after_the_plan_was_made_is_placed_by_its_new_size(alice, sent):
    from dctoolkit.jobs.intake.again import edit_jobs

    make_node("node-1", slots=2)
    first, second = queue_job(alice), queue_job(alice)
    now = timezone.now()
    stale = dispatch.plan_pass(now)  # both 1-cpu jobs fit the 2 slots
    assert sorted(a.job_id for a in stale.assignments) == [first.id, second.id]
    changed, _ = edit_jobs([second], {"request_cpus": "2"}, actor="test")  # between the plan and the claim
    assert changed == [second.id]
    assert dispatch.carry_out(stale, now) == 1, "planned again: the edited job no longer fits beside the other"
    states = dict(Job.objects.values_list("id", "state"))
    assert states == {first.id: JobState.DISPATCHED, second.id: JobState.QUEUED}


def test_an_edit_counts_itself_under_the_scheduler_lock_and_a_pass_reads_the_count(alice):
    from dctoolkit.jobs.intake.again import edit_jobs
    from dctoolkit.jobs.scheduling.lock import edits_seen

    make_node("node-1", slots=2)
    job = queue_job(alice)
    before = edits_seen()
    edit_jobs([job], {"request_cpus": "2"}, actor="test")
    edit_jobs([job], {"priority": "3"}, actor="test")
    assert edits_seen() == before + 2


def test_a_plan_overtaken_by_a_jobs_end_is_made_again_under_the_lock_and_fills_the_freed_slot_too(alice, sent):
    node = make_node("node-1", slots=2)
    running = queue_job(alice)
    Job.objects.filter(id=running.id).update(state=JobState.RUNNING, node=node, attempts=1)
    first, second = queue_job(alice), queue_job(alice)
    now = timezone.now()
    plan = dispatch.plan_pass(now)  # one slot free: the first queued job
    assert [a.job_id for a in plan.assignments] == [first.id]
    Job.objects.filter(id=running.id).update(state=JobState.SUCCEEDED)  # between the plan and the claim
    # Planning again costs a plan's reads; carrying out the stale plan would leave the freed slot to a
    # whole pass of its own (measured: more passes a job and more of the scheduler's CPU, bench/README.md).
    assert dispatch.carry_out(plan, now) == 2
    assert sorted(sent) == [(first.id, 1, "node-1", 1), (second.id, 1, "node-1", 1)]


def test_a_pass_with_every_slot_taken_stops_after_one_read_of_the_nodes_with_their_sums(alice, sent):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_node("node-1")
    queue_job(alice), queue_job(alice)
    assert dispatch.schedule_pass(timezone.now()) == 1
    with CaptureQueriesContext(connection) as queries:
        assert dispatch.schedule_pass(timezone.now()) == 0
    assert len(queries) == 1, [q["sql"] for q in queries]


def test_claim_many_dispatches_only_the_jobs_still_queued_each_to_its_own_node(alice):
    nodes = [make_node("node-1"), make_node("node-2")]
    sub = Submission.objects.create(owner=alice, source_name="job.txt", text="", job_count=1)
    now = timezone.now()
    jobs = Job.objects.bulk_create(
        Job(submission=sub, owner=alice, name=f"t{i}", executable="t.sh", submitted_at=now)
        for i in range(transitions.CLAIM_BATCH + 50)  # more than one batch where the claim goes by batches
    )
    ids = [job.id for job in jobs]
    cancelled, held, taken = ids[3], ids[-2], ids[transitions.CLAIM_BATCH]
    Job.objects.filter(id=cancelled).update(state=JobState.CANCELLED)
    Job.objects.filter(id=held).update(state=JobState.HELD)
    Job.objects.filter(id=taken).update(state=JobState.DISPATCHED, node=nodes[0], attempts=1)
    placements = {job_id: nodes[i % 2].id for i, job_id in enumerate(ids)}
    with CaptureQueriesContext(connection) as queries:
        won = transitions.claim_many(placements, now)
    assert set(won) == set(ids) - {cancelled, held, taken}
    assert set(won.values()) == {1}
    rows = {job_id: (state, node_id, attempts) for job_id, state, node_id, attempts in
            Job.objects.values_list("id", "state", "node_id", "attempts")}  # fmt: skip
    for i, job_id in enumerate(ids):
        if job_id in won:
            assert rows[job_id] == (JobState.DISPATCHED, nodes[i % 2].id, 1)
    assert rows[cancelled] == (JobState.CANCELLED, None, 0)
    assert rows[held] == (JobState.HELD, None, 0)
    assert rows[taken] == (JobState.DISPATCHED, nodes[0].id, 1), "another pass's claim is left as it was"
    claims = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    if fastsql.update_returns_rows():  # PostgreSQL, SQLite: one statement however many jobs, and no read-back
        assert len(queries.captured_queries) == len(claims) == 1


def _sync_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_only_the_claims_own_transaction_commits_unflushed(sent):
    """The claim's commit need not wait for its WAL flush (a lost claim leaves the job queued: see
    `dispatch.commit_unflushed`), but the setting must not outlive the pass's transaction: the scheduler's
    connection goes on to write other things (requeues, charges) that must be flushed."""
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    owner = get_user_model().objects.create_user("carol")
    make_node("node-1")
    job = queue_job(owner)
    assert _sync_commit() == "on"
    seen: list[tuple[str, str]] = []

    def note(execute, sql, params, many, context):
        if sql.lstrip().startswith("UPDATE") and "dispatched_at" in sql:
            with context["connection"].connection.cursor() as raw:  # the driver's own: not wrapped again
                raw.execute("SHOW synchronous_commit")
                seen.append(("claim", raw.fetchone()[0]))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note):
        assert dispatch.schedule_pass(timezone.now()) == 1
    assert seen == [("claim", "off")]
    assert _sync_commit() == "on", "SET LOCAL ends with the pass's transaction"
    job.refresh_from_db()
    assert job.state == JobState.DISPATCHED and sent == [(job.id, 1, "node-1", 1)]


def test_a_pass_inside_a_callers_transaction_leaves_its_commit_flushed(alice, sent):
    """The setting covers a whole transaction: a pass run inside someone else's (the tests' own here) must
    not make that transaction's other writes unflushed."""
    make_node("node-1")
    queue_job(alice)
    assert dispatch.schedule_pass(timezone.now()) == 1
    if connection.vendor == "postgresql":
        assert _sync_commit() == "on"
