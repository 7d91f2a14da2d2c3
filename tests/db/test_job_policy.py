"""HTCondor's job policy on the real database: on_exit_hold holds a run that ended (the node's report,
tasks.record), the housekeeping's periodic_release lets it run again, periodic_hold / periodic_remove act on
jobs not ended, and jobs without such expressions cost the housekeeping one empty lookup."""

from datetime import timedelta

import pytest
from django.utils import timezone

from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Attempt, Job, JobState, KillRequest, Submission
from dctoolkit.jobs.scheduling import housekeeping
from dctoolkit.nodes.models import Node
from dctoolkit.nodes.worker import runner, tasks
from tests.db.conftest import sub

pytestmark = pytest.mark.usefixtures("no_scheduler")

HOLD = "ExitCode != 0"


def make(owner, policy: dict[str, str], **keys) -> Job:
    submission = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    periodic = any(k.startswith("periodic_") and not k.endswith(("_reason", "_subcode")) for k in policy)
    return Job.objects.create(submission=submission, owner=owner, name="t", executable="t.sh",
                              submitted_at=timezone.now(), policy=policy, periodic_policy=periodic, **keys)  # fmt: skip


def run_once(job: Job, node: Node, exit_code: int) -> JobState:
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    assert transitions.start(job.id, attempt, node.name, timezone.now())
    result = runner.RunResult(exit_code=exit_code, wall_seconds=10.0, cpu_seconds=1.0, max_rss_mb=1.0)
    return tasks.record(Job.objects.get(id=job.id), attempt, result, [], sandboxed=True)


def test_a_submission_keeps_its_expressions_and_only_a_periodic_one_is_marked_for_the_housekeeping(alice, folder):
    (job,) = sub(f"on_exit_hold = {HOLD}\nperiodic_release = NumJobStarts < 3\n", alice, folder)
    assert (job.policy, job.periodic_policy) == ({"on_exit_hold": HOLD, "periodic_release": "NumJobStarts < 3"}, True)
    (plain,) = sub(f"on_exit_hold = {HOLD}\n", alice, folder)
    assert plain.periodic_policy is False
    (held,) = sub("hold = true\n", alice, folder)
    assert (held.state, held.hold_code) == (JobState.HELD, 15), "HTCondor's code for a job submitted held"


def test_on_exit_hold_holds_a_failed_run_and_periodic_release_runs_it_again_until_it_succeeds(alice, node):
    job = make(alice, {"on_exit_hold": HOLD, "periodic_release": "NumJobStarts < 3"})
    assert run_once(job, node, 1) == JobState.HELD
    job.refresh_from_db()
    assert (job.state, job.reason, job.hold_code, job.hold_subcode) == (
        JobState.HELD, f"held by on_exit_hold = {HOLD}", 3, 0,
    )  # fmt: skip
    assert (job.node_id, job.kill_requested, job.exit_code, job.held_at is not None) == (None, "", 1, True)
    assert list(Attempt.objects.filter(job=job).values_list("state", "exit_code")) == [("held", 1)]
    assert housekeeping.apply_job_policies(timezone.now()) == 1
    job.refresh_from_db()
    assert (job.state, job.reason, job.hold_code) == (
        JobState.QUEUED, "released by periodic_release = NumJobStarts < 3", None,
    )  # fmt: skip
    assert run_once(job, node, 0) == JobState.SUCCEEDED
    job.refresh_from_db()
    assert (job.state, job.attempts, job.exit_code) == (JobState.SUCCEEDED, 2, 0)
    assert housekeeping.apply_job_policies(timezone.now()) == 0, "an ended job is not read again"


def test_periodic_release_stops_releasing_once_its_expression_is_false(alice, node):
    job = make(alice, {"on_exit_hold": HOLD, "periodic_release": "NumJobStarts < 2"})
    assert run_once(job, node, 1) == JobState.HELD
    assert housekeeping.apply_job_policies(timezone.now()) == 1
    assert run_once(job, node, 1) == JobState.HELD
    assert housekeeping.apply_job_policies(timezone.now()) == 0
    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.HELD, 2)


def test_the_osg_release_waits_until_the_job_has_been_held_a_minute(alice, node):
    release = "(NumJobStarts < 5) && ((CurrentTime - EnteredCurrentStatus) > 60)"
    job = make(alice, {"on_exit_hold": HOLD, "periodic_release": release})
    assert run_once(job, node, 2) == JobState.HELD
    held_at = Job.objects.get(id=job.id).held_at
    assert housekeeping.apply_job_policies(held_at + timedelta(seconds=30)) == 0
    assert housekeeping.apply_job_policies(held_at + timedelta(seconds=61)) == 1
    assert Job.objects.get(id=job.id).state == JobState.QUEUED


def test_periodic_release_reading_the_hold_code_leaves_a_job_its_owner_held(alice):
    job = make(alice, {"periodic_release": "HoldReasonCode == 3"})
    assert transitions.hold(job)
    job.refresh_from_db()
    assert (job.state, job.hold_code) == (JobState.HELD, 1)
    assert housekeeping.apply_job_policies(timezone.now()) == 0


def test_on_exit_remove_false_runs_it_again_at_once(alice, node):
    job = make(alice, {"on_exit_remove": "ExitCode == 0"})
    assert run_once(job, node, 4) == JobState.QUEUED
    job.refresh_from_db()
    assert (job.retries, job.node_id, job.reason) == (
        1,
        None,
        "exit status 4; on_exit_remove = ExitCode == 0 is false: it runs again",
    )
    assert run_once(job, node, 0) == JobState.SUCCEEDED


def test_periodic_hold_stops_a_running_job_and_periodic_remove_cancels_a_queued_one(alice, node):
    running = make(alice, {"periodic_hold": "JobStatus == 2", "periodic_hold_reason": '"too long"'})
    attempt = transitions.claim(running.id, node.id, [], timezone.now())
    assert transitions.start(running.id, attempt, node.name, timezone.now())
    queued = make(alice, {"periodic_remove": "JobStatus == 1 && NumJobStarts == 0"})
    assert housekeeping.apply_job_policies(timezone.now()) == 2
    running.refresh_from_db()
    assert (running.state, running.reason, running.kill_requested, running.hold_code) == (
        JobState.HELD, "too long", KillRequest.HOLD, 3,
    )  # fmt: skip
    queued.refresh_from_db()
    assert (queued.state, queued.reason) == (
        JobState.CANCELLED,
        "removed by periodic_remove = JobStatus == 1 && NumJobStarts == 0",
    )


def test_jobs_without_periodic_expressions_cost_the_housekeeping_one_empty_query(
    alice, node, django_assert_num_queries
):
    for _ in range(50):
        make(alice, {"on_exit_hold": HOLD})
    with django_assert_num_queries(1):
        assert housekeeping.apply_job_policies(timezone.now()) == 0


def test_every_marked_job_is_evaluated_each_round_however_many_there_are(alice, monkeypatch):
    monkeypatch.setattr(housekeeping, "POLICY_BATCH", 2)
    jobs = [make(alice, {"periodic_release": "true"}) for _ in range(5)]
    assert transitions.hold_jobs(Job.objects.all(), timezone.now()) == 5
    assert housekeeping.apply_job_policies(timezone.now()) == 5
    assert {j.state for j in Job.objects.filter(id__in=[j.id for j in jobs])} == {JobState.QUEUED}


def test_num_holds_counts_every_hold_so_periodic_remove_ends_a_job_held_twice(alice, node):
    policy = {"on_exit_hold": HOLD, "periodic_release": "NumHolds < 2", "periodic_remove": "NumHolds >= 2"}
    job = make(alice, policy)
    assert run_once(job, node, 1) == JobState.HELD
    assert Job.objects.get(id=job.id).num_holds == 1
    assert housekeeping.apply_job_policies(timezone.now()) == 1
    assert Job.objects.get(id=job.id).state == JobState.QUEUED, "held once: released"
    assert run_once(job, node, 1) == JobState.HELD
    assert housekeeping.apply_job_policies(timezone.now()) == 1
    job.refresh_from_db()
    assert (job.state, job.num_holds, job.reason) == (
        JobState.CANCELLED, 2, "removed by periodic_remove = NumHolds >= 2",
    )  # fmt: skip


def test_owner_holds_and_releases_count_in_num_holds_too(alice):
    job = make(alice, {"periodic_remove": "NumHolds >= 2"})
    assert transitions.hold(job) and transitions.release(Job.objects.get(id=job.id))
    assert housekeeping.apply_job_policies(timezone.now()) == 0
    assert transitions.hold(Job.objects.get(id=job.id))
    assert housekeeping.apply_job_policies(timezone.now()) == 1
    assert Job.objects.get(id=job.id).state == JobState.CANCELLED


def test_owner_reads_the_jobs_user_name(alice, bob):
    mine, theirs = (make(user, {"periodic_hold": 'Owner == "alice"'}) for user in (alice, bob))
    assert housekeeping.apply_job_policies(timezone.now()) == 1
    assert [Job.objects.get(id=j.id).state for j in (mine, theirs)] == [JobState.HELD, JobState.QUEUED]


def test_the_housekeeping_reads_owners_in_the_same_query(alice, bob, django_assert_num_queries):
    for user in (alice, bob, alice):
        make(user, {"periodic_remove": 'Owner == "nobody"'})
    # The batch of jobs (with their owners), their runs' wall times, and the empty batch after it.
    with django_assert_num_queries(3):
        assert housekeeping.apply_job_policies(timezone.now()) == 0
