"""Desktop nodes on the real database: suspended -> running, a vacate that gives the attempt back, time
suspended not charged, the scheduler keeping off a desktop whose owner is back, and the owner's page with
its "I need it now"."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from dctoolkit.accounts.usage import standings
from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Attempt, Job, JobState
from dctoolkit.jobs.scheduling import dispatch
from dctoolkit.jobs.scheduling.snapshot import free_nodes
from dctoolkit.jobs.web.serializers import job_dict, jobs_payload, nodes_payload
from dctoolkit.nodes.models import Node
from dctoolkit.operations.models import AuditEvent
from tests.db.conftest import online_node, sub

pytestmark = pytest.mark.usefixtures("no_scheduler")


@pytest.fixture
def desk(db):
    node = online_node("desk-1", slots=2)
    Node.objects.filter(pk=node.pk).update(policy="desktop", owner="alice", idle_minutes=15.0)
    node.refresh_from_db()
    return node


def running_job(owner, folder, node, started_ago: float = 100.0, cpus: int = 1) -> Job:
    (job,) = sub(f"request_cpus = {cpus}", owner, folder)
    now = timezone.now()
    attempt = transitions.claim(job.id, node.id, [], now - timedelta(seconds=started_ago + 1))
    assert attempt == 1
    assert transitions.start(job.id, attempt, node.name, now - timedelta(seconds=started_ago))
    return Job.objects.get(id=job.id)


def test_suspended_then_running_again(alice, folder, desk):
    job = running_job(alice, folder, desk)
    now = timezone.now()
    assert transitions.suspend(job.id, 1, now, reason="suspended: desk-1's owner is back")
    job.refresh_from_db()
    assert job.state == JobState.SUSPENDED and job.suspended_at == now
    assert job_dict(job, now)["reason"] == "suspended: desk-1's owner is back"
    assert not transitions.suspend(job.id, 1, now)  # only a running job is suspended
    assert not transitions.resume(job.id, 2, now)  # another attempt's report changes nothing
    assert transitions.resume(job.id, 1, now + timedelta(seconds=30))
    job.refresh_from_db()
    assert (job.state, job.suspended_at, job.suspended_seconds, job.reason) == (JobState.RUNNING, None, 30.0, "")
    assert transitions.finish(job.id, 1, JobState.SUCCEEDED, now + timedelta(seconds=40), exit_code=0)
    assert Job.objects.get(id=job.id).state == JobState.SUCCEEDED


def test_a_suspended_job_holds_its_slot_and_is_shown_so(alice, folder, desk):
    job = running_job(alice, folder, desk, cpus=2)
    now = timezone.now()
    transitions.suspend(job.id, 1, now - timedelta(seconds=10))
    seen = free_nodes(now)
    assert seen.free["desk-1"][1].free_cpus == 0  # its processes are stopped, not gone
    shown = job_dict(Job.objects.get(id=job.id), now)
    assert shown["state"] == "suspended"
    assert shown["suspended_seconds"] == pytest.approx(10.0, abs=0.01)
    assert shown["run_seconds"] == pytest.approx(90.0, abs=0.5)  # stands still while suspended
    page = logged_in(alice).get(f"/jobs/{job.id}/").content.decode()
    assert 'data-testid="suspended"' in page and "not charged" in page and ">suspended<" in page


def test_a_job_that_ends_while_suspended_is_recorded(alice, folder, desk):
    job = running_job(alice, folder, desk)
    transitions.suspend(job.id, 1, timezone.now())
    assert transitions.finish(job.id, 1, JobState.FAILED, timezone.now(), reason="killed by signal 9", exit_code=-9)
    job.refresh_from_db()
    assert (job.state, job.suspended_at) == (JobState.FAILED, None)


def test_vacate_requeues_without_using_up_an_attempt(alice, folder, desk, settings):
    settings.DCT_MAX_ATTEMPTS = 1
    job = running_job(alice, folder, desk)
    for _ in range(3):  # more vacates than DCT_MAX_ATTEMPTS allows lost runs: never failed for it
        now = timezone.now()
        transitions.suspend(job.id, 1, now)
        assert transitions.vacate(job.id, 1, "desk-1's owner came back", now) == JobState.QUEUED
        job.refresh_from_db()
        assert (job.state, job.attempts, job.node_id, job.reason) == (
            JobState.QUEUED, 0, None, "desk-1's owner came back",
        )  # fmt: skip
        assert (job.started_at, job.suspended_at, job.suspended_seconds) == (None, None, 0.0)
        assert transitions.claim(job.id, desk.id, [], now) == 1  # the same attempt number again
        assert transitions.start(job.id, 1, desk.name, now)
    history = list(Attempt.objects.filter(job=job).values_list("attempt", "state", "node", "reason"))
    assert history == [(1, "vacated", "desk-1", "desk-1's owner came back")] * 3
    assert transitions.vacate(job.id, 2, "x", timezone.now()) is None  # not this attempt: left alone


def test_a_vacate_leaves_a_cancel_in_place(alice, folder, desk):
    job = running_job(alice, folder, desk)
    transitions.suspend(job.id, 1, timezone.now())
    assert transitions.cancel_jobs(Job.objects.filter(id=job.id), timezone.now()) == 1
    job.refresh_from_db()
    assert (job.state, job.kill_requested) == (JobState.CANCELLED, "cancel")  # its node kills the stopped job
    assert transitions.vacate(job.id, 1, "desk-1's owner came back", timezone.now()) == JobState.CANCELLED
    assert Job.objects.get(id=job.id).kill_requested == ""


def test_a_suspended_job_can_be_held(alice, folder, desk):
    job = running_job(alice, folder, desk)
    transitions.suspend(job.id, 1, timezone.now())
    assert transitions.hold_jobs(Job.objects.filter(id=job.id), timezone.now()) == 1
    job.refresh_from_db()
    assert (job.state, job.kill_requested, job.node_id) == (JobState.HELD, "hold", desk.id)


def test_suspended_time_is_not_charged(alice, folder, desk):
    job = running_job(alice, folder, desk, started_ago=100.0, cpus=2)
    now = timezone.now()
    # Suspended for 30 s, resumed, and suspended again 20 s ago: 50 s of the 100 ran.
    transitions.suspend(job.id, 1, now - timedelta(seconds=60))
    transitions.resume(job.id, 1, now - timedelta(seconds=30))
    transitions.suspend(job.id, 1, now - timedelta(seconds=20))
    assert standings([alice.id], now)[alice.id].running_charge == pytest.approx(2 * 50.0, abs=0.5)


def test_the_node_record_feeds_its_charge_from_what_ran(alice, folder, desk):
    # What a node records at a job's end: run_seconds without the time suspended, charged so (tasks.record).
    from dctoolkit.accounts.models import Account
    from dctoolkit.nodes.worker import runner, tasks

    job = running_job(alice, folder, desk, cpus=2)
    result = runner.RunResult(exit_code=0, wall_seconds=100.0, cpu_seconds=1.0, max_rss_mb=1.0,
                              suspended_seconds=60.0)  # fmt: skip
    before = Account.objects.filter(user=alice).values_list("usage", flat=True).first() or 0.0
    assert tasks.record(job, 1, result, [], sandboxed=True) == JobState.SUCCEEDED
    job.refresh_from_db()
    assert job.run_seconds == 40.0
    after = Account.objects.get(user=alice).usage
    assert after - before == pytest.approx(2 * 40.0, rel=1e-3)


def test_no_new_job_goes_to_a_desktop_whose_owner_is_present(alice, folder, desk, no_sends):
    Node.objects.filter(pk=desk.pk).update(owner_present=True)
    (job,) = sub("node = desk-1", alice, folder)
    dispatch.schedule_pass(timezone.now())
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    (shown,) = jobs_payload([job], timezone.now())
    assert shown["reason"].startswith("pinned to desk-1, a desktop whose owner is using it")
    (node,) = nodes_payload(timezone.now())
    assert (node["policy"], node["owner"], node["owner_present"]) == ("desktop", "alice", True)
    out = io.StringIO()
    call_command("nodes", stdout=out)
    assert "available (desktop: owner present)" in out.getvalue()
    Node.objects.filter(pk=desk.pk).update(owner_present=False)  # the owner left
    dispatch.schedule_pass(timezone.now())
    assert Job.objects.get(id=job.id).state == JobState.DISPATCHED


# --- the owner's page --------------------------------------------------------------------


@pytest.fixture
def users(db):
    model = get_user_model()
    return {
        "alice": model.objects.get_or_create(username="alice")[0],
        "bob": model.objects.create_user("bob"),
        "staff": model.objects.create_user("root", is_staff=True),
    }


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_owner_sees_what_ran_and_when_it_lends(users, folder, desk):
    job = running_job(users["alice"], folder, desk)
    transitions.suspend(job.id, 1, timezone.now())
    transitions.vacate(job.id, 1, "desk-1's owner came back", timezone.now())
    page = logged_in(users["alice"]).get("/nodes/desk-1/desktop/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "once you have been idle 15 minutes" in text
    assert f'data-ran-job="{job.id}"' in text and "desk-1&#x27;s owner came back" in text
    assert "I need it now" in text
    assert logged_in(users["staff"]).get("/nodes/desk-1/desktop/").status_code == 200


def test_another_user_and_a_plain_node_are_not_there(users, desk):
    online_node("node-2")
    assert logged_in(users["bob"]).get("/nodes/desk-1/desktop/").status_code == 404
    assert logged_in(users["bob"]).post("/nodes/desk-1/desktop/reclaim/").status_code == 404
    assert logged_in(users["staff"]).get("/nodes/node-2/desktop/").status_code == 404
    assert Client().get("/nodes/desk-1/desktop/").status_code == 302  # to the login page
    assert Node.objects.get(pk=desk.pk).reclaimed_at is None


def test_i_need_it_now(users, desk):
    answer = logged_in(users["alice"]).post("/nodes/desk-1/desktop/reclaim/")
    assert answer.status_code == 302
    node = Node.objects.get(pk=desk.pk)
    assert node.reclaimed_at is not None and node.owner_present  # no new job from this moment
    assert not free_nodes(timezone.now()).free["desk-1"][1].lends
    event = AuditEvent.objects.get(action="reclaim")
    assert (event.actor_name, event.target_kind, event.target) == ("alice", "node", "desk-1")
    assert logged_in(users["alice"]).get("/nodes/desk-1/desktop/reclaim/").status_code == 405  # POST only
