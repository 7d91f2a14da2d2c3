"""A node's start and end of a job in few statements: the start returns the row it started, the end records
the attempt and charges it (on PostgreSQL in one statement) exactly as the step-by-step path does."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.accounts.granting import folders_of
from dctoolkit.accounts.grants import GrantedFolder
from dctoolkit.accounts.models import Account, DailyUsage, Grant
from dctoolkit.accounts.usage import charge_job
from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Attempt, Job, JobState, Submission
from dctoolkit.nodes.worker import runner, tasks
from tests.db.conftest import online_node

pytestmark = pytest.mark.usefixtures("no_scheduler")


@pytest.fixture
def node(db):
    return online_node()


def make(owner, **keys) -> Job:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    return Job.objects.create(submission=sub, owner=owner, name="t", executable="t.sh", submitted_at=timezone.now(),
                              **keys)  # fmt: skip


def started(job: Job, node, cores=(0,)) -> tuple[Job, int]:
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    row = transitions.start_and_read(job.id, attempt, node.name, timezone.now(), cores)
    assert row is not None
    return row, attempt


def test_the_start_returns_the_row_it_started_once_and_a_resent_start_finds_its_own(node):
    job = make(get_user_model().objects.create_user("alice"), request_cpus=2)
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    now = timezone.now()
    with CaptureQueriesContext(connection) as statements:
        row = transitions.start_and_read(job.id, attempt, node.name, now, (1, 3))
    assert len(statements) == (2 if connection.vendor == "mysql" else 1), "one UPDATE ... RETURNING where it exists"
    assert row is not None and row.executable == "t.sh" and row.request_cpus == 2
    assert (row.state, row.started_at, row.cpu_indices, row.attempts) == (JobState.RUNNING, now, [1, 3], attempt)
    assert transitions.start_and_read(job.id, attempt, node.name, now, (1, 3)) is None, "started already"
    again = transitions.start_and_read(job.id, attempt, node.name, now, (1, 3), again=True)
    assert again is not None and again.started_at == now, "the same start sent again: its own"
    later = now + timedelta(seconds=1)
    assert transitions.start_and_read(job.id, attempt, node.name, later, (1, 3), again=True) is None, "another's"
    assert transitions.start_and_read(job.id, attempt + 1, node.name, later, (1,)) is None


def test_the_start_reads_the_owners_grants_as_it_starts_the_job_on_postgresql(node, tmp_path):
    alice, bob = (get_user_model().objects.create_user(name) for name in ("alice", "bob"))
    for path, writable in (("b", False), ("a", False), ("a", True)):  # a twice: writable wins, as folders_of
        Grant.objects.create(user=alice, path=str(tmp_path / path), writable=writable)
    Grant.objects.create(user=bob, path=str(tmp_path / "bob"))
    (tmp_path / "b").mkdir()
    first, _ = started(make(alice), node)
    Grant.objects.filter(user=alice, path=str(tmp_path / "a")).delete()  # revoked: the next start has it no more
    second, _ = started(make(alice), node)
    if connection.vendor != "postgresql":
        assert first.granted_at_start is None and second.granted_at_start is None  # the node reads them
        return
    assert first.granted_at_start == (GrantedFolder(str(tmp_path / "a"), True), GrantedFolder(str(tmp_path / "b")))
    assert second.granted_at_start == folders_of(alice.pk) == (GrantedFolder(str(tmp_path / "b")),)
    assert started(make(get_user_model().objects.create_user("carol")), node)[0].granted_at_start == ()
    with CaptureQueriesContext(connection) as statements:
        fence = tasks.job_fence(second, SimpleNamespace(sandbox=True))  # type: ignore[arg-type]
    assert fence is not None and [g.path for g in fence.granted] == [str(tmp_path / "b")]
    assert len(statements) == 0, "the grants as the start read them: no read of their own"


def test_a_start_loses_to_a_cancel_and_to_another_node(node):
    alice = get_user_model().objects.create_user("alice")
    job = make(alice)
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    assert transitions.start_and_read(job.id, attempt, "node-elsewhere", timezone.now(), (0,)) is None
    transitions.cancel(Job.objects.get(id=job.id))
    assert transitions.start_and_read(job.id, attempt, node.name, timezone.now(), (0,)) is None
    assert Job.objects.get(id=job.id).state == JobState.CANCELLED


def run(row: Job, attempt: int, exit_code: int, wall: float = 10.0) -> JobState:
    result = runner.RunResult(exit_code=exit_code, wall_seconds=wall, cpu_seconds=1.0, max_rss_mb=1.0)
    return tasks.record(row, attempt, result, [], sandboxed=True, node="node-1")


def test_the_nodes_end_records_and_charges_exactly_what_the_step_by_step_charge_does(node):
    users = get_user_model().objects
    alice, bob = users.create_user("alice"), users.create_user("bob")
    for wall, cpus in ((10.0, 2), (3.25, 1), (7.5, 3)):
        row, attempt = started(make(alice, request_cpus=cpus), node, cores=tuple(range(cpus)))
        with CaptureQueriesContext(connection) as statements:
            assert run(row, attempt, 0, wall) == JobState.SUCCEEDED
        if connection.vendor == "postgresql":
            assert len(statements) == 1, "the end, its history and its charge: one statement"
        ended = Attempt.objects.get(job_id=row.id)
        assert (ended.attempt, ended.node, ended.state, ended.exit_code) == (attempt, "node-1", "succeeded", 0)
        assert ended.started_at == row.started_at
        charge_job(bob.id, cpus, wall, ended.finished_at)  # the same charge, one statement at a time
        mine, theirs = Account.objects.get(user=alice), Account.objects.get(user=bob)
        assert (mine.usage, mine.usage_at, mine.share) == (theirs.usage, theirs.usage_at, theirs.share)
    days = [DailyUsage.objects.values_list("day", "cpu_seconds", "jobs").get(user=u) for u in (alice, bob)]
    assert days[0] == days[1] and days[0][1:] == (2 * 10.0 + 3.25 + 3 * 7.5, 3)


def test_a_retried_run_is_charged_and_kept_in_the_history(node):
    alice = get_user_model().objects.create_user("alice")
    row, attempt = started(make(alice, max_retries=1), node)
    assert run(row, attempt, 3) == JobState.QUEUED
    job = Job.objects.get(id=row.id)
    assert (job.retries, job.node_id, job.cpu_indices, job.started_at) == (1, None, [], None)
    assert Attempt.objects.get(job_id=row.id).state == "failed"
    assert Account.objects.get(user=alice).usage == 10.0


def test_a_run_its_owner_cancelled_keeps_its_state_and_is_charged(node):
    alice = get_user_model().objects.create_user("alice")
    row, attempt = started(make(alice), node)
    transitions.cancel(Job.objects.get(id=row.id))
    assert run(row, attempt, 0) == JobState.SUCCEEDED, "what the node saw; the row says otherwise"
    job = Job.objects.get(id=row.id)
    assert (job.state, job.kill_requested) == (JobState.CANCELLED, "")
    assert Attempt.objects.get(job_id=row.id).state == "cancelled"
    assert Account.objects.get(user=alice).usage == 10.0


def test_an_end_the_node_no_longer_owns_writes_nothing(node):
    alice = get_user_model().objects.create_user("alice")
    row, attempt = started(make(alice), node)
    transitions.requeue(row.id, attempt, "node lost", timezone.now())  # the scheduler took it back
    run(row, attempt, 0)
    assert Job.objects.get(id=row.id).state == JobState.QUEUED
    assert not Account.objects.filter(user=alice, usage__gt=0).exists(), "a run not recorded is not charged"
    assert not DailyUsage.objects.filter(user=alice).exists()
    assert [a.state for a in Attempt.objects.filter(job_id=row.id)] == ["lost"]
