"""POST /api/submissions/{id}/cancel/ (hold/, release/) and POST /api/jobs/cancel/ with selectors."""

import pytest
from django.utils import timezone

from dctoolkit.jobs.models import Dependency, DependencyKind, Job, JobState, Submission
from tests.api.conftest import client_for


def batch(owner, count: int) -> list[Job]:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=count)
    now = timezone.now()
    return Job.objects.bulk_create(
        [Job(submission=sub, owner=owner, name=f"fit-{i}", process=i, executable="t.sh", submitted_at=now)
         for i in range(count)]
    )  # fmt: skip


def test_a_submissions_jobs_are_held_released_and_cancelled_in_one_call(users, alice):
    jobs = batch(users["alice"], 5)
    url = f"/api/submissions/{jobs[0].submission_id}"
    held = alice.post(f"{url}/hold/")
    assert held.status_code == 200
    assert [(j["id"], j["state"]) for j in held.json()["jobs"]] == [(j.id, "held") for j in jobs]
    assert {j["state"] for j in alice.post(f"{url}/release/").json()["jobs"]} == {"queued"}
    Job.objects.filter(id=jobs[0].id).update(state=JobState.SUCCEEDED)
    cancelled = alice.post(f"{url}/cancel/").json()["jobs"]
    assert [j["id"] for j in cancelled] == [j.id for j in jobs[1:]], "only the changed jobs are answered"
    assert alice.post(f"{url}/cancel/").json() == {"jobs": []}


def test_another_users_submission_is_404_and_untouched(users, bob, root):
    jobs = batch(users["alice"], 3)
    for verb in ("cancel", "hold", "release"):
        assert bob.post(f"/api/submissions/{jobs[0].submission_id}/{verb}/").status_code == 404
    assert not Job.objects.exclude(state=JobState.QUEUED).exists()
    assert len(root.post(f"/api/submissions/{jobs[0].submission_id}/hold/").json()["jobs"]) == 3, "staff: anyone's"


def test_selectors_in_the_body_narrow_and_never_reach_another_users_jobs(users, alice):
    mine = batch(users["alice"], 4)
    theirs = batch(users["bob"], 4)
    body = {"jobs": f"{mine[0].id}-{theirs[-1].id}", "name": "fit-[12]"}
    changed = alice.post("/api/jobs/cancel/", body, format="json").json()["jobs"]
    assert sorted(j["id"] for j in changed) == [mine[1].id, mine[2].id]
    assert not Job.objects.filter(owner=users["bob"]).exclude(state=JobState.QUEUED).exists()
    assert len(alice.post("/api/jobs/hold/", {"all": True}, format="json").json()["jobs"]) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, 'which jobs? give "jobs", "submission", "name", "state" or "all": true'),
        ({"jobs": "5-1"}, "'5-1' is not a range of job ids; write FIRST-LAST, e.g. 100-199"),
        ({"state": "asleep"}, "--state asleep: no such state; choose from"),
        ({"every": True}, "unknown field 'every'; the fields are jobs, submission, name, state, all"),
    ],
)
def test_a_bad_selection_is_400_saying_what_is_wrong(users, alice, body, message):
    batch(users["alice"], 1)
    response = alice.post("/api/jobs/cancel/", body, format="json")
    assert response.status_code == 400 and message in response.json()["error"]
    assert not Job.objects.exclude(state=JobState.QUEUED).exists()


def test_anonymous_is_401(client, users):
    assert client.post("/api/submissions/1/cancel/").status_code == 401
    assert client_for(users["bob"]).post("/api/submissions/999999/cancel/").status_code == 404


def test_a_big_batchs_answer_shows_each_job_as_its_own_page_does(users, alice):
    """The bulk answer reads plain rows and each batch's edges and attempts once (rows.job_rows,
    upstream.by_job_or_submission): each job object is the one GET /api/jobs/{id}/ answers."""
    from dctoolkit.jobs.models import Attempt, Dependency
    from dctoolkit.nodes.models import Node

    jobs = batch(users["alice"], 950)  # more than one IN list of ids: read per submission
    other = batch(users["alice"], 1)[0]
    node = Node.objects.create(name="node-7", slots=2, memory_total_mb=4096, last_heartbeat=timezone.now())
    Job.objects.filter(id=jobs[3].id).update(state=JobState.RUNNING, node=node, attempts=2,
                                             started_at=timezone.now())  # fmt: skip
    Dependency.objects.create(child=jobs[5], parent=other, kind="after_ok")
    Dependency.objects.create(child=other, parent=jobs[0], kind="after_any")  # of another batch: not answered
    Attempt.objects.create(job=jobs[3], attempt=1, node="node-7", state="lost", reason="node lost",
                           started_at=timezone.now(), finished_at=timezone.now())  # fmt: skip
    answered = alice.post(f"/api/submissions/{jobs[0].submission_id}/hold/").json()["jobs"]
    assert [j["id"] for j in answered] == [j.id for j in jobs]
    by_id = {j["id"]: j for j in answered}
    assert by_id[jobs[3].id]["node"] == "node-7" and len(by_id[jobs[3].id]["attempt_history"]) == 1
    assert by_id[jobs[5].id]["depends_on"] == [{"job": other.id, "kind": "after_ok"}]
    assert by_id[jobs[0].id]["depends_on"] == []
    for job in (jobs[0], jobs[3], jobs[5], jobs[-1]):
        page = alice.get(f"/api/jobs/{job.id}/").json()
        assert by_id[job.id] == page, f"job {job.id}: the bulk answer differs from its page"


def test_released_jobs_that_wait_on_a_running_parent_are_answered_waiting(users, alice):
    (parent,) = batch(users["alice"], 1)
    Job.objects.filter(id=parent.id).update(state=JobState.RUNNING)
    children = batch(users["alice"], 3)
    Job.objects.filter(id__in=[j.id for j in children]).update(state=JobState.WAITING)
    Dependency.objects.bulk_create([Dependency(child=j, parent=parent, kind=DependencyKind.AFTER_OK) for j in children])
    url = f"/api/submissions/{children[0].submission_id}"
    assert alice.post(f"{url}/hold/").status_code == 200
    body = {"jobs": f"{children[0].id}-{children[1].id}"}
    released = alice.post("/api/jobs/release/", body, format="json")
    assert released.status_code == 200, released.content[:2000]
    answered = [(j["id"], j["state"]) for j in released.json()["jobs"]]
    assert answered == [(children[0].id, "waiting"), (children[1].id, "waiting")]
    assert Job.objects.get(id=children[2].id).state == JobState.HELD
