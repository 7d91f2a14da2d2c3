"""The admin's jobs: state changes only through transitions (actions), never by editing a field."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from dctoolkit.jobs.models import Job, JobState, KillRequest
from tests.portal.conftest import make_job

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/jobs/job/"


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("chief", password="chief-pass-123"))
    return client


def act(client, action: str, *jobs: Job):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [j.id for j in jobs]}, follow=True)


def said(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_no_field_of_a_job_can_be_edited_in_the_admin(admin_client, owner, node):
    job = make_job(owner, state=JobState.RUNNING, node=node, gpu_indices=[0], request_cpus=2)
    page = admin_client.get(f"{CHANGELIST}{job.id}/change/")
    assert page.status_code == 200
    assert list(page.context["adminform"].form.fields) == []
    assert "fit.py" in page.content.decode()  # shown, read-only
    # A forged POST that sets the scheduler's fields and the request anyway changes none of them.
    forged = {"state": "succeeded", "attempts": "9", "node": "", "gpu_indices": "[]", "request_cpus": "1"}
    assert admin_client.post(f"{CHANGELIST}{job.id}/change/", forged).status_code == 302
    job.refresh_from_db()
    assert (job.state, job.attempts, job.node_id, job.gpu_indices, job.request_cpus) == (
        JobState.RUNNING, 1, node.id, [0], 2,
    )  # fmt: skip


def test_no_job_is_added_by_hand(admin_client):
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


def test_cancel_action_cancels_through_transitions_and_counts(admin_client, owner, node):
    queued = make_job(owner, state=JobState.QUEUED)
    running = make_job(owner, state=JobState.RUNNING, node=node)
    done = make_job(owner, state=JobState.SUCCEEDED)
    response = act(admin_client, "cancel_jobs", queued, running, done)
    assert said(response) == [
        "2 of 3 jobs: cancelled (a running job stops within 2 seconds).",
        f"1 of 3 jobs unchanged (job {done.id} is succeeded): it has already ended.",
    ]
    queued.refresh_from_db()
    running.refresh_from_db()
    assert (queued.state, queued.reason) == (JobState.CANCELLED, "cancelled by its owner")
    assert running.kill_requested == KillRequest.CANCEL  # its node kills it: the same path as ./dct cancel
    assert Job.objects.get(id=done.id).state == JobState.SUCCEEDED


def test_hold_then_release_actions(admin_client, owner):
    queued = make_job(owner, state=JobState.QUEUED)
    assert said(act(admin_client, "hold_jobs", queued)) == ["1 of 1 jobs: held."]
    assert Job.objects.get(id=queued.id).state == JobState.HELD
    assert said(act(admin_client, "release_jobs", queued)) == ["1 of 1 jobs: released."]
    assert Job.objects.get(id=queued.id).state == JobState.QUEUED
    assert said(act(admin_client, "release_jobs", queued)) == [
        f"1 of 1 jobs unchanged (job {queued.id} is queued): only held jobs can be released."
    ]


def test_staff_without_the_change_permission_cannot_act(client, staff, owner):
    queued = make_job(owner, state=JobState.QUEUED)
    client.force_login(staff)  # is_staff, no model permissions
    response = client.post(CHANGELIST, {"action": "cancel_jobs", "_selected_action": [queued.id]})
    assert response.status_code == 403
    assert Job.objects.get(id=queued.id).state == JobState.QUEUED


def test_staff_who_may_only_view_jobs_cannot_act(client, staff, owner):
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_job"))
    queued = make_job(owner, state=JobState.QUEUED)
    client.force_login(staff)
    assert client.get(CHANGELIST).status_code == 200  # may look
    response = act(client, "cancel_jobs", queued)
    assert response.status_code == 200 and said(response) == []  # not offered: the form refuses it
    assert Job.objects.get(id=queued.id).state == JobState.QUEUED


def test_a_node_can_be_drained_in_the_admin_but_not_rewritten(admin_client, node):
    page = admin_client.get(f"/admin/nodes/node/{node.id}/change/")
    assert list(page.context["adminform"].form.fields) == ["drained"]
    forged = {"drained": "on", "state": "offline", "slots": "64"}
    assert admin_client.post(f"/admin/nodes/node/{node.id}/change/", forged).status_code == 302
    node.refresh_from_db()
    assert (node.drained, node.state, node.slots) == (True, "online", 4)
    assert admin_client.get("/admin/nodes/node/add/").status_code == 403
