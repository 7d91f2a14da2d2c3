"""Start times and throttles on the real database: submitted waiting, queued by the housekeeping only."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.jobs import transitions
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling import dispatch, housekeeping
from dctoolkit.jobs.web.serializers import jobs_payload
from tests.db.conftest import online_node, sub

SLOTTED = (JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING)


pytestmark = pytest.mark.usefixtures("no_scheduler", "no_sends")


@pytest.fixture
def node(db):
    return online_node(slots=8, memory_mb=8192)


def state_of(job: Job) -> str:
    return Job.objects.get(id=job.id).state


def reason_of(job: Job, now=None) -> str:
    (row,) = jobs_payload([Job.objects.select_related("owner", "node").get(id=job.id)], now or timezone.now())
    return row["reason"]


def chores(now) -> None:
    """The scheduler's round, the steps that touch waiting jobs, then a pass."""
    housekeeping.resolve_dependencies(now)
    housekeeping.queue_due_retries(now)
    housekeeping.release_waiting(now)
    dispatch.schedule_pass(now)


def test_a_job_with_a_start_time_waits_until_then_and_is_queued_by_the_housekeeping(alice, folder):
    (job,) = sub("start_after = +30m\n", alice, folder)
    row = Job.objects.get(id=job.id)
    assert row.state == JobState.WAITING
    assert timedelta(minutes=29) < row.start_after - timezone.now() <= timedelta(minutes=30)
    shown = timezone.localtime(row.start_after).strftime("%Y-%m-%d %H:%M")
    assert reason_of(job) == f"starts after {shown} (in 29 min)"
    assert housekeeping.release_waiting(timezone.now()) == 0
    assert state_of(job) == JobState.WAITING
    assert housekeeping.release_waiting(timezone.now() + timedelta(minutes=31)) == 1
    assert state_of(job) == JobState.QUEUED


def test_a_start_time_in_the_past_is_refused_at_its_line_and_nothing_is_queued(alice, folder):
    with pytest.raises(SubmissionError) as raised:
        sub("name = x\nstart_after = yesterday\n", alice, folder)
    assert "job.txt:3: start_after = yesterday is not a time" in str(raised.value)
    with pytest.raises(SubmissionError, match=r"job.txt:2: start_after = 2020-01-01T00:00 is in the past"):
        sub("start_after = 2020-01-01T00:00\n", alice, folder)
    with pytest.raises(SubmissionError, match=r"job.txt:2: deferral_time = 1000 is in the past"):
        sub("deferral_time = 1000\n", alice, folder)
    assert Job.objects.count() == 0


def test_a_start_time_waits_for_its_dependencies_too_and_the_other_way_round(alice, folder):
    (parent,) = sub("", alice, folder)
    (child,) = sub(f"after_ok = {parent.id}\nstart_after = +10m\n", alice, folder)
    assert reason_of(child) == f"waiting for job {parent.id}, queued", "the dependency is told first"
    later = timezone.now() + timedelta(minutes=11)
    housekeeping.release_waiting(later)
    assert state_of(child) == JobState.WAITING, "due, but its parent has not succeeded"
    Job.objects.filter(id=parent.id).update(state=JobState.SUCCEEDED, finished_at=timezone.now())
    housekeeping.resolve_dependencies(timezone.now())
    assert state_of(child) == JobState.WAITING, "its parent succeeded, but its start time is to come"
    assert reason_of(child).startswith("starts after ")
    housekeeping.release_waiting(later)
    assert state_of(child) == JobState.QUEUED


def test_a_throttle_keeps_at_most_k_jobs_dispatched_or_running_while_passes_run_and_jobs_end(alice, folder, node):
    jobs = sub("max_running = 2\nqueue 5\n", alice, folder)
    ids = [j.id for j in jobs]
    assert {state_of(j) for j in jobs} == {JobState.WAITING}
    seen_most = 0
    ended: list[int] = []
    for _round in range(12):
        chores(timezone.now())
        slotted = list(Job.objects.filter(id__in=ids, state__in=SLOTTED).order_by("id"))
        seen_most = max(seen_most, len(slotted))
        assert len(slotted) <= 2
        for job in slotted:  # the node starts what it was sent, and ends the oldest one
            if job.state == JobState.DISPATCHED:
                assert transitions.start(job.id, job.attempts, "node-1", timezone.now())
        running = Job.objects.filter(id__in=ids, state=JobState.RUNNING).order_by("id").first()
        if running:
            assert transitions.finish(running.id, running.attempts, JobState.SUCCEEDED, timezone.now(), exit_code=0)
            ended.append(running.id)
    assert seen_most == 2
    assert ended == ids, "all five ran, lowest ids first"


def test_the_throttle_reason_says_how_many_run_and_a_pass_never_reads_the_waiting_ones(alice, folder, node):
    jobs = sub("max_running = 2\nqueue 5\n", alice, folder)
    batch = Job.objects.get(id=jobs[0].id).submission_id
    assert housekeeping.release_waiting(timezone.now()) == 2
    assert housekeeping.release_waiting(timezone.now()) == 0, "no room left"
    with CaptureQueriesContext(connection) as queries:
        assert dispatch.schedule_pass(timezone.now()) == 2
    assert not any("'waiting'" in q["sql"] for q in queries.captured_queries), "a pass names no waiting job"
    assert reason_of(jobs[4]) == f"max_running = 2: 2 jobs of batch {batch} running"


def test_hold_and_release_of_throttled_jobs_keep_the_throttle(alice, folder, node):
    jobs = sub("max_running = 2\nqueue 4\n", alice, folder)
    chores(timezone.now())
    first, second, third, fourth = (Job.objects.get(id=j.id) for j in jobs)
    assert (first.state, second.state, third.state) == (JobState.DISPATCHED, JobState.DISPATCHED, JobState.WAITING)
    # Holding a waiting one: held; released, it goes back to waiting, not past the throttle to the queue.
    assert transitions.hold(fourth) and state_of(fourth) == JobState.HELD
    assert transitions.release(fourth) and state_of(fourth) == JobState.WAITING
    # Holding a dispatched one frees its slot: the next waiting one takes it, not more.
    assert transitions.hold(first)
    Job.objects.filter(id=first.id).update(kill_requested="")  # the node confirmed the stop
    chores(timezone.now())
    assert [state_of(j) for j in jobs] == [JobState.HELD, JobState.DISPATCHED, JobState.DISPATCHED, JobState.WAITING]
    # Released while two hold slots: it waits for its turn.
    assert transitions.release(first) and state_of(first) == JobState.WAITING
    chores(timezone.now())
    assert Job.objects.filter(id__in=[j.id for j in jobs], state__in=SLOTTED).count() == 2
    # Cancelling the waiting ones works as for any waiting job.
    assert transitions.cancel(fourth) and state_of(fourth) == JobState.CANCELLED


def test_a_throttled_retry_waits_for_its_turn(alice, folder, node):
    jobs = sub("max_running = 1\nmax_retries = 1\nretry_delay = 30s\nqueue 2\n", alice, folder)
    chores(timezone.now())
    first = Job.objects.get(id=jobs[0].id)
    assert transitions.start(first.id, first.attempts, "node-1", timezone.now())
    retry_at = timezone.now() + timedelta(seconds=30)
    assert transitions.finish(first.id, first.attempts, JobState.WAITING, timezone.now(), retry_at=retry_at)
    chores(timezone.now())
    assert [state_of(j) for j in jobs] == [JobState.WAITING, JobState.DISPATCHED], "the slot went to the next"
    housekeeping.queue_due_retries(retry_at)
    housekeeping.release_waiting(retry_at)
    assert state_of(jobs[0]) == JobState.WAITING, "due, but the throttle is full"


def test_submit_takes_begin_on_the_command_line(alice, folder, settings):
    settings.DCT_CALLER_DIR = str(folder)
    (folder / "job.txt").write_text("executable = a.sh\n")
    out = io.StringIO()
    call_command("submit", "job.txt", "--begin", "+1h", "--json", "--user", "alice", stdout=out)
    (job,) = json.loads(out.getvalue())["jobs"]
    assert job["state"] == "waiting" and job["reason"].startswith("starts after ")
    assert Job.objects.get(id=job["id"]).start_after > timezone.now() + timedelta(minutes=59)
    with pytest.raises(CommandError, match=r"--begin 2020-01-01T00:00: start_after = 2020-01-01T00:00 is in the past"):
        call_command("submit", "job.txt", "--begin", "2020-01-01T00:00", "--user", "alice", stdout=io.StringIO())
    assert Job.objects.count() == 1


def test_jobs_of_one_file_given_different_limits_keep_the_smallest(alice, folder):
    jobs = sub("max_running = 1\nqueue 2\nmax_running = 3\nqueue 2\n", alice, folder)
    assert housekeeping.release_waiting(timezone.now()) == 1
    assert [state_of(j) for j in jobs] == [JobState.QUEUED] + [JobState.WAITING] * 3


def test_a_throttles_queued_jobs_take_its_places_so_no_more_than_k_are_ever_dispatched(alice, folder):
    """Why queued jobs count (upstream.THROTTLE_COUNTS): a pass does not read throttles, so the K the
    housekeeping queued are the K that may be dispatched.  Were only dispatched and running jobs counted,
    every round while no node is free would queue K more, and a node coming back would get them all."""
    jobs = sub("max_running = 2\nqueue 6\n", alice, folder)
    ids = [j.id for j in jobs]
    for _round in range(3):  # no node: what is queued stays queued
        chores(timezone.now())
    assert Job.objects.filter(id__in=ids, state=JobState.QUEUED).count() == 2
    online_node(slots=8, memory_mb=8192)
    for _round in range(3):
        chores(timezone.now())
    assert Job.objects.filter(id__in=ids, state__in=(JobState.DISPATCHED, JobState.RUNNING)).count() == 2
    assert Job.objects.filter(id__in=ids, state=JobState.QUEUED).count() == 0
