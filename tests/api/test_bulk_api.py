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


def test_the_plain_rows_answer_every_job_as_the_model_does(users):
    """jobs.rows.NOT_READ is kept by hand: any column an answer or a reason reads must not be in it.  Jobs in
    every state, bare and with every column that a reason might read set (held with a code, a retry due,
    a start deferred, suspended, on a node, of a DAG, waiting on a parent), answered from plain rows
    (`job_rows`, what a bulk action answers) and from model instances (what a job's page answers): the
    same dicts, and no JobRow attribute missing (that raises, naming the column)."""
    from datetime import timedelta

    from dctoolkit.jobs.models import Dag, DagNode
    from dctoolkit.jobs.rows import job_rows
    from dctoolkit.jobs.web.serializers import jobs_payload
    from dctoolkit.nodes.models import Node

    owner = users["alice"]
    now = timezone.now()
    node = Node.objects.create(name="node-3", slots=4, memory_total_mb=4096, last_heartbeat=now)
    dag = Dag.objects.create(owner=owner, source_name="p.dag", text="JOB a a.sub\n")
    dag_node = DagNode.objects.create(dag=dag, name="a")
    (parent,) = batch(owner, 1)
    jobs = batch(owner, 2 * len(JobState))
    full = {"reason": "why", "kill_requested": "", "acted_at": now, "pinned_node": "node-3", "request_gpus": 1,
            "max_runtime_seconds": 60.0, "network": "none", "container": "img.sif", "priority": 5,
            "max_retries": 3, "success_exit_code": 2, "retry_until": 4, "retry_delay_seconds": 30.0, "retries": 1,
            "retry_at": now + timedelta(minutes=5), "policy": {"periodic_release": "true"}, "periodic_policy": True,
            "hold_code": 1, "hold_subcode": 7, "held_at": now, "num_holds": 2, "start_after": now + timedelta(hours=1),
            "max_running": 2, "node": node, "gpu_indices": [0], "cpu_indices": [1, 2], "gpu_util_total": 90.0,
            "gpu_util_samples": 3, "gpu_util_recent": 30.0, "gpu_idle_since": now, "gpu_util_at": now, "attempts": 2,
            "exit_code": 1, "dispatched_at": now, "started_at": now - timedelta(seconds=9), "finished_at": now,
            "run_seconds": 9.0, "suspended_seconds": 1.0, "suspended_at": now, "cpu_seconds": 8.0,
            "max_rss_mb": 12.5, "sandboxed": True, "notified": True, "email": "a@example.org", "dag": dag,
            "dag_node": dag_node, "attributes": {"Project": "x"}, "environment": {"A": "1"},
            "inputs": ["in.txt"], "output": ["out.txt"], "arguments": ["-v"]}  # fmt: skip
    for i, state in enumerate(JobState):
        Job.objects.filter(id=jobs[2 * i].id).update(state=state)
        Job.objects.filter(id=jobs[2 * i + 1].id).update(state=state, **full)
    Dependency.objects.bulk_create(
        [Dependency(child=j, parent=parent, kind=DependencyKind.AFTER_OK) for j in jobs[::3]]
    )
    chosen = Job.objects.filter(submission_id=jobs[0].submission_id)
    as_rows = jobs_payload(job_rows(chosen), now)
    as_models = jobs_payload(list(chosen.order_by("id").select_related("owner", "node", "dag_node")), now)
    assert len(as_rows) == len(jobs) and {j["state"] for j in as_rows} == {s.value for s in JobState}
    for row, model in zip(as_rows, as_models, strict=True):
        assert row == model, f"job {row['id']} ({row['state']}): the plain row's answer differs"
