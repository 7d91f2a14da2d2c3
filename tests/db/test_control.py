"""Cancel, hold and release on the real database: what the answer says, when a slot is freed, one UPDATE.

The node's side is played by the same transitions a node worker calls
(`start`, `finish`); the end-to-end kill runs in tests/integration/test_pipelines.py.
"""

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.accounts.models import Account
from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.scheduling.snapshot import capacity_in_use
from dctoolkit.jobs.selection import Selection, act_on_selection, jobs_to_act_on
from dctoolkit.nodes.models import Node
from tests.db.conftest import online_node

pytestmark = pytest.mark.usefixtures("no_scheduler")


@pytest.fixture
def node(db):
    return online_node()


def batch(owner, count: int, name: str = "fit") -> list[Job]:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=count)
    now = timezone.now()
    return Job.objects.bulk_create(
        [Job(submission=sub, owner=owner, name=f"{name}-{i}", process=i, executable="t.sh", submitted_at=now)
         for i in range(count)]
    )  # fmt: skip


def running(job: Job, node: Node) -> int:
    """The job dispatched to `node` and started there, as a node would: its attempt."""
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    assert transitions.start(job.id, attempt, node.name, timezone.now())
    return attempt


def test_a_running_job_cancelled_shows_cancelled_at_once_and_keeps_its_slot_until_the_kill_is_done(alice, node):
    (job,) = batch(alice, 1)
    attempt = running(job, node)
    assert transitions.cancel(job)
    job.refresh_from_db()
    assert (job.state, job.kill_requested, job.node_id) == (JobState.CANCELLED, "cancel", node.id)
    assert capacity_in_use()[node.id].jobs == 1, "its process still runs: the slot stays taken"

    # The node reports the run's own end (it exited 0 just as the kill came): the cancel stays.
    assert transitions.finish(job.id, attempt, JobState.SUCCEEDED, timezone.now(), exit_code=0, run_seconds=7.0)
    job.refresh_from_db()
    assert (job.state, job.kill_requested, job.run_seconds) == (JobState.CANCELLED, "", 7.0)
    assert job.reason == "cancelled by its owner"
    assert capacity_in_use().get(node.id) is None, "the kill is done: the slot is free"


def test_the_cancelled_runs_node_report_is_charged(alice, node):
    from dctoolkit.nodes.worker import runner, tasks

    (job,) = batch(alice, 1)
    attempt = running(job, node)
    transitions.cancel(job)
    result = runner.RunResult(exit_code=-15, wall_seconds=30.0, cpu_seconds=1.0, max_rss_mb=5.0,
                              stopped=runner.StopReason.CANCEL)  # fmt: skip
    assert tasks.record(Job.objects.get(id=job.id), attempt, result, [], sandboxed=True) == JobState.CANCELLED
    assert Job.objects.get(id=job.id).state == JobState.CANCELLED
    assert Account.objects.get(user=alice).usage == pytest.approx(30.0, rel=0.01)


def test_a_running_job_held_shows_held_at_once_and_is_released_only_once_stopped(alice, node):
    (job,) = batch(alice, 1)
    attempt = running(job, node)
    assert transitions.hold(job)
    job.refresh_from_db()
    assert (job.state, job.kill_requested) == (JobState.HELD, "hold")
    assert capacity_in_use()[node.id].jobs == 1
    assert not transitions.release(job), "released now, it could be dispatched beside its last attempt"
    assert "still being stopped" in transitions.CONTROLS["release"].refusal_for(job)
    assert transitions.finish(job.id, attempt, JobState.HELD, timezone.now())
    job.refresh_from_db()
    assert (job.state, job.kill_requested, job.node_id) == (JobState.HELD, "", None)
    assert capacity_in_use().get(node.id) is None
    assert transitions.release(job)
    assert Job.objects.get(id=job.id).state == JobState.QUEUED


def test_a_node_lost_while_killing_frees_the_slot_and_keeps_the_cancel(alice, node):
    (job,) = batch(alice, 1)
    running(job, node)
    transitions.cancel(job)
    transitions.requeue_node_jobs(node, "node lost", timezone.now())
    job.refresh_from_db()
    assert (job.state, job.kill_requested) == (JobState.CANCELLED, "")
    assert capacity_in_use().get(node.id) is None


def test_cancelling_a_batch_is_one_update_and_answers_the_changed_jobs(alice):
    jobs = batch(alice, 500)
    Job.objects.filter(id=jobs[0].id).update(state=JobState.SUCCEEDED)
    selection = Selection(submission=jobs[0].submission_id)
    with CaptureQueriesContext(connection) as queries:
        changed = list(
            act_on_selection("cancel", jobs_to_act_on(alice, selection), selection, timezone.now(), actor=alice)
        )
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1, updates
    assert len(changed) == 499 and {j.state for j in changed} == {JobState.CANCELLED}
    assert Job.objects.get(id=jobs[0].id).state == JobState.SUCCEEDED, "an ended job stays as it ended"


def test_selectors_narrow_and_ids_and_ranges_add_up(alice, bob):
    mine = batch(alice, 10)
    theirs = batch(bob, 5)
    Job.objects.filter(id=mine[1].id).update(state=JobState.HELD)
    first = mine[0].id
    selection = Selection(ids=(first,), ranges=((first + 5, first + 7), (theirs[0].id, theirs[-1].id)))
    changed = act_on_selection("hold", jobs_to_act_on(alice, selection), selection, timezone.now(), actor=alice)
    assert sorted(j.id for j in changed) == [first, first + 5, first + 6, first + 7]
    assert not Job.objects.filter(owner=bob).exclude(state=JobState.QUEUED).exists(), "another user's range"

    by_name = Selection(name="fit-[89]", state="queued")
    changed = act_on_selection("cancel", jobs_to_act_on(alice, by_name), by_name, timezone.now(), actor=alice)
    assert sorted(j.name for j in changed) == ["fit-8", "fit-9"]
    everything = Selection(everything=True)
    changed = act_on_selection("cancel", jobs_to_act_on(alice, everything), everything, timezone.now(), actor=alice)
    assert len(changed) == 8
    assert not Job.objects.filter(owner=bob).exclude(state=JobState.QUEUED).exists()


def run_cli(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_prints_how_many_changed_and_json_lists_them(alice):
    jobs = batch(alice, 30)
    first, last = jobs[0].id, jobs[-1].id
    out, _ = run_cli("hold", f"{first}-{first + 9}", "--user", "alice")
    assert out == "10 jobs held\n"
    out, _ = run_cli("release", "--submission", str(jobs[0].submission_id), "--state", "held", "--json",
                     "--user", "alice")  # fmt: skip
    rows = json.loads(out)["jobs"]
    assert [r["id"] for r in rows] == list(range(first, first + 10)) and {r["state"] for r in rows} == {"queued"}
    out, _ = run_cli("cancel", "--all", "--name", "fit-2*", "--user", "alice")
    assert out == "11 jobs cancelled (a running job stops within 2 seconds)\n"  # fit-2 and fit-20..29
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=f"job {last} is cancelled: it has already ended"):
        run_cli("cancel", str(last), "--user", "alice")  # fit-29, named by its id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "cancel: which jobs? give ids, ranges (100-199), --submission S, --name GLOB, --state STATE or --all"),
        (("9-3",), "'9-3' is not a range of job ids; write FIRST-LAST, e.g. 100-199"),
        (("x",), "'x' is not a job id; job ids are numbers, as './dct jobs' shows, or ranges such as 100-199"),
        (("--state", "sleeping"), "--state sleeping: no such state; choose from"),
        (("--submission", "999999"), "no submission 999999 of yours"),
    ],
)
def test_a_bad_selector_is_refused_saying_how_to_write_it(alice, args, message):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as refused:
        run_cli("cancel", *args, "--user", "alice")
    assert message in str(refused.value)


def test_another_users_submission_is_refused_as_if_it_did_not_exist(alice, bob):
    from django.core.management.base import CommandError

    theirs = batch(bob, 3)
    with pytest.raises(CommandError, match=f"no submission {theirs[0].submission_id} of yours"):
        run_cli("cancel", "--submission", str(theirs[0].submission_id), "--user", "alice")
    assert not Job.objects.exclude(state=JobState.QUEUED).exists()
