"""Dependencies on the real database: submitted waiting, released by the housekeeping, never seen by a pass."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.jobs import transitions
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.models import Dependency, Job, JobState
from dctoolkit.jobs.scheduling import dispatch, housekeeping
from dctoolkit.jobs.web.serializers import jobs_payload
from tests.db.conftest import online_node, sub

pytestmark = pytest.mark.usefixtures("no_scheduler", "no_sends")


def end(job: Job, state: JobState) -> None:
    Job.objects.filter(id=job.id).update(state=state, finished_at=timezone.now())


def state_of(job: Job) -> str:
    return Job.objects.get(id=job.id).state


def test_a_child_waits_until_its_parent_succeeds_then_is_queued(alice, folder):
    (parent,) = sub("", alice, folder)
    (child,) = sub(f"after_ok = {parent.id}\n", alice, folder)
    assert state_of(child) == JobState.WAITING
    assert housekeeping.resolve_dependencies(timezone.now()) == 0
    (row,) = jobs_payload([Job.objects.select_related("owner", "node").get(id=child.id)], timezone.now())
    assert row["depends_on"] == [{"job": parent.id, "kind": "after_ok"}]
    assert row["reason"] == f"waiting for job {parent.id}, queued"
    end(parent, JobState.SUCCEEDED)
    assert housekeeping.resolve_dependencies(timezone.now()) == 1
    assert state_of(child) == JobState.QUEUED
    assert housekeeping.resolve_dependencies(timezone.now()) == 0, "applied once"


def test_a_condition_that_can_never_hold_cancels_the_child_naming_the_parent_and_chains_on(alice, folder):
    (parent,) = sub("", alice, folder)
    (child,) = sub(f"after_ok = {parent.id}\n", alice, folder)
    (grandchild,) = sub(f"after_fail = {child.id}\n", alice, folder)
    end(parent, JobState.FAILED)
    housekeeping.resolve_dependencies(timezone.now())
    cancelled = Job.objects.get(id=child.id)
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.reason == (
        f"dependency never met: job {parent.id} failed (after_ok: it waited for job {parent.id} to succeed)"
    )
    housekeeping.resolve_dependencies(timezone.now())
    assert state_of(grandchild) == JobState.QUEUED, "after_fail holds for a cancelled parent"


def test_a_batch_dependency_waits_for_every_job_of_the_batch(alice, folder):
    parents = sub("queue = 3\n", alice, folder)
    (gather,) = sub(f"after_any = batch:{parents[0].submission_id}\n", alice, folder)
    assert Dependency.objects.filter(child=gather).count() == 3
    end(parents[0], JobState.FAILED)
    end(parents[1], JobState.SUCCEEDED)
    housekeeping.resolve_dependencies(timezone.now())
    assert state_of(gather) == JobState.WAITING
    end(parents[2], JobState.CANCELLED)
    housekeeping.resolve_dependencies(timezone.now())
    assert state_of(gather) == JobState.QUEUED


def test_a_missing_or_foreign_parent_is_refused_at_its_line_and_nothing_is_queued(alice, bob, folder):
    (theirs,) = sub("", bob, folder)
    for line, message in [
        (f"after_ok = {theirs.id}", f"job.txt:2: after_ok: no job {theirs.id} of yours;"),
        ("after_any = 999999", "job.txt:2: after_any: no job 999999 of yours;"),
        (f"after_fail = batch:{theirs.submission_id}", f"job.txt:2: after_fail: no submission {theirs.submission_id}"),
    ]:
        with pytest.raises(SubmissionError) as refused:
            sub(line + "\n", alice, folder)
        assert str(refused.value).startswith(message)
    assert not Job.objects.filter(owner=alice).exists()


def test_a_pass_never_reads_waiting_jobs_and_never_dispatches_one(alice, folder):
    online_node()
    (parent,) = sub("", alice, folder)
    Job.objects.filter(id=parent.id).update(state=JobState.RUNNING)
    children = sub(f"after_ok = {parent.id}\nqueue = 3\n", alice, folder)
    with CaptureQueriesContext(connection) as queries:
        assert dispatch.schedule_pass(timezone.now()) == 0
    sql = [q["sql"] for q in queries.captured_queries]
    assert any("'queued'" in q for q in sql), "the queries are shown with their values"
    assert not any("'waiting'" in q for q in sql), "a pass names no waiting job"
    assert {state_of(c) for c in children} == {JobState.WAITING}


def test_a_held_child_released_goes_back_to_waiting_while_its_parent_runs(alice, folder):
    (parent,) = sub("", alice, folder)
    (child,) = sub(f"after_ok = {parent.id}\n", alice, folder)
    assert transitions.hold(child) and state_of(child) == JobState.HELD
    assert transitions.release(child) and state_of(child) == JobState.WAITING
    end(parent, JobState.SUCCEEDED)
    housekeeping.resolve_dependencies(timezone.now())
    transitions.hold(child)
    assert transitions.release(child) and state_of(child) == JobState.QUEUED


def test_submit_takes_after_ok_on_the_command_line(alice, folder, settings):
    settings.DCT_CALLER_DIR = str(folder)  # where `dct` was called from: relative paths start there
    (folder / "job.txt").write_text("executable = a.sh\n")
    out = io.StringIO()
    call_command("submit", "job.txt", "--json", "--user", "alice", stdout=out)
    (parent,) = json.loads(out.getvalue())["jobs"]
    out = io.StringIO()
    call_command("submit", "job.txt", "--after-ok", str(parent["id"]), "--json", "--user", "alice", stdout=out)
    (child,) = json.loads(out.getvalue())["jobs"]
    assert child["state"] == "waiting" and child["depends_on"] == [{"job": parent["id"], "kind": "after_ok"}]
    with pytest.raises(CommandError, match="--after-any 999999: after_any: no job 999999 of yours"):
        call_command("submit", "job.txt", "--after-any", "999999", "--user", "alice", stdout=io.StringIO())
    with pytest.raises(CommandError, match="--after-fail x: after_fail: 'x' is not a job id"):
        call_command("submit", "job.txt", "--after-fail", "x", "--user", "alice", stdout=io.StringIO())
    assert Job.objects.count() == 2
