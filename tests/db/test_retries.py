"""Retries on the real database: the node's report (tasks.record) runs a job again, keeps every attempt."""

import pytest
from django.utils import timezone

from dctoolkit.accounts.models import Account
from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Attempt, Job, JobState, Submission
from dctoolkit.jobs.scheduling import housekeeping, wake
from dctoolkit.jobs.web.serializers import jobs_payload
from dctoolkit.nodes.models import Node
from dctoolkit.nodes.worker import runner, tasks


@pytest.fixture(autouse=True)
def no_scheduler(settings, monkeypatch):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(wake, "_redis", None)


def make(owner, **keys) -> Job:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    return Job.objects.create(submission=sub, owner=owner, name="t", executable="t.sh", submitted_at=timezone.now(),
                              **keys)  # fmt: skip


def run_once(job: Job, node: Node, exit_code: int, stopped: str = "") -> JobState:
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    assert transitions.start(job.id, attempt, node.name, timezone.now())
    result = runner.RunResult(exit_code=exit_code, wall_seconds=10.0, cpu_seconds=1.0, max_rss_mb=1.0, stopped=stopped)
    return tasks.record(Job.objects.get(id=job.id), attempt, result, [], sandboxed=True)


def test_a_failing_job_runs_again_until_its_retries_are_used_and_every_attempt_is_kept(alice, node):
    job = make(alice, max_retries=2)
    assert run_once(job, node, 3) == JobState.QUEUED
    job.refresh_from_db()
    assert (job.retries, job.node_id, job.reason) == (1, None, "exit status 3; retry 1 of 2")
    assert run_once(job, node, 3) == JobState.QUEUED
    assert run_once(job, node, 4) == JobState.FAILED
    job.refresh_from_db()
    assert (job.state, job.attempts, job.reason) == (JobState.FAILED, 3, "exit status 4; after 2 retries")
    (row,) = jobs_payload([Job.objects.select_related("owner", "node").get(id=job.id)], timezone.now())
    history = row["attempt_history"]
    assert [(a["attempt"], a["node"], a["state"], a["exit_code"]) for a in history] == [
        (1, "node-1", "failed", 3),
        (2, "node-1", "failed", 3),
        (3, "node-1", "failed", 4),
    ]
    assert history[0]["reason"] == "exit status 3; retry 1 of 2" and history[0]["started_at"]
    assert Account.objects.get(user=alice).usage == pytest.approx(30.0, rel=0.01), "every attempt is charged"


def test_the_success_exit_code_ends_it_succeeded_with_that_code(alice, node):
    job = make(alice, max_retries=3, success_exit_code=2)
    assert run_once(job, node, 2) == JobState.SUCCEEDED
    job.refresh_from_db()
    assert (job.exit_code, job.retries) == (2, 0)


def test_a_retry_delay_waits_then_the_housekeeping_queues_it(alice, node):
    job = make(alice, max_retries=1, retry_delay_seconds=30)
    assert run_once(job, node, 1) == JobState.WAITING
    job.refresh_from_db()
    assert job.retry_at is not None and job.reason == "exit status 1; retry 1 of 1, in 30 s"
    (row,) = jobs_payload([Job.objects.select_related("owner", "node").get(id=job.id)], timezone.now())
    assert row["reason"] == "exit status 1; retry 1 of 1, in 30 s"
    assert housekeeping.queue_due_retries(timezone.now()) == 0, "not yet"
    assert housekeeping.queue_due_retries(job.retry_at) == 1
    assert Job.objects.get(id=job.id).state == JobState.QUEUED


@pytest.mark.parametrize("stopped", [runner.StopReason.MAX_RUNTIME, runner.StopReason.MEMORY, runner.StopReason.CANCEL])
def test_limit_kills_and_cancel_are_never_retried(alice, node, stopped):
    job = make(alice, max_retries=5, max_runtime_seconds=60)
    if stopped == runner.StopReason.CANCEL:
        attempt = transitions.claim(job.id, node.id, [], timezone.now())
        transitions.start(job.id, attempt, node.name, timezone.now())
        transitions.cancel(job)
        result = runner.RunResult(exit_code=-15, wall_seconds=1.0, cpu_seconds=0.0, max_rss_mb=1.0, stopped=stopped)
        tasks.record(Job.objects.get(id=job.id), attempt, result, [], sandboxed=True)
    else:
        run_once(job, node, -9, stopped=stopped)
    job.refresh_from_db()
    assert job.state in (JobState.FAILED, JobState.CANCELLED) and job.retries == 0
    assert Attempt.objects.filter(job=job).count() == 1


def test_retries_do_not_use_up_the_lost_node_limit(alice, node, settings):
    settings.DCT_MAX_ATTEMPTS = 2
    job = make(alice, max_retries=3)
    run_once(job, node, 1)
    run_once(job, node, 1)
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    assert transitions.requeue(job.id, attempt, "node lost", timezone.now()) == JobState.QUEUED, "its first lost run"
