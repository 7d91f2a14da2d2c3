"""DAGs through the API and the portal: submit a DAG file as POST /api/jobs/, GET /api/dags/{id}/, rerun,
the DAG's page with its graph; another user's DAG is 404 everywhere."""

import pytest
from django.test import Client
from django.utils import timezone

from dctoolkit.jobs.models import Dag, Job, JobState, Submission
from dctoolkit.jobs.scheduling import dagman
from tests.api.conftest import submit, upload
from tests.api.test_shapes import command_json, schema_keys

SUB = "executable = job.sh\narguments = $(JOB)\nqueue\n"
JOB = "#!/bin/sh\necho $1\n"
DIAMOND = "JOB A a.sub\nJOB B b.sub\nJOB C b.sub\nPARENT A CHILD B C\nFINAL F a.sub\n"


@pytest.fixture
def dag(alice):
    response = submit(alice, DIAMOND, {"a.sub": SUB, "b.sub": SUB, "job.sh": JOB}, name="pipeline.dag")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_dag_file_through_the_submit_endpoint_answers_its_id_and_first_jobs(dag):
    assert [(j["dag"], j["dag_node"], j["arguments"]) for j in dag["jobs"]] == [(dag["dag"], "A", ["A"])]


def test_get_dag_shows_each_node_and_its_parents(alice, dag):
    shown = alice.get(f"/api/dags/{dag['dag']}/").json()
    assert shown["dag"] == dag["dag"] and shown["state"] == "running"
    assert [(n["name"], n["state"], n["parents"]) for n in shown["nodes"]] == [
        ("A", "queued", []), ("B", "waiting", ["A"]), ("C", "waiting", ["A"]), ("F", "waiting", []),
    ]  # fmt: skip
    assert shown["nodes"][0]["jobs"] == [dag["jobs"][0]["id"]]


def test_another_users_dag_is_404(bob, dag):
    assert bob.get(f"/api/dags/{dag['dag']}/").status_code == 404
    assert bob.post(f"/api/dags/{dag['dag']}/rerun/").status_code == 404


def test_a_bad_dag_is_400_with_every_problem(alice):
    response = submit(alice, "JOB A a.sub\nPARENT A CHILD X\n", {}, name="p.dag")
    assert response.status_code == 400
    assert response.json()["error"].splitlines() == [
        "p.dag:1: submit file 'a.sub' not found — check the name and DIR",
        "p.dag:2: PARENT/CHILD: no node 'X' — define it with a JOB line",
    ]
    assert not Dag.objects.exists()


def test_rerun_is_409_while_running_then_queues_the_failed_nodes(alice, dag):
    url = f"/api/dags/{dag['dag']}/rerun/"
    assert alice.post(url).status_code == 409
    Job.objects.filter(dag_id=dag["dag"]).update(state=JobState.FAILED, exit_code=1, finished_at=timezone.now())
    for _ in range(3):
        dagman.advance_dags(timezone.now())
    Job.objects.filter(dag_id=dag["dag"], state=JobState.QUEUED).update(state=JobState.SUCCEEDED, exit_code=0)
    for _ in range(3):
        dagman.advance_dags(timezone.now())
    assert alice.get(f"/api/dags/{dag['dag']}/").json()["state"] == "succeeded", "FINAL succeeded"
    shown = alice.post(url).json()
    assert [(n["name"], n["state"]) for n in shown["nodes"]] == [
        ("A", "queued"), ("B", "waiting"), ("C", "waiting"), ("F", "waiting"),
    ], "every node failed: all run again, the root's job queued at once"  # fmt: skip


def test_the_dag_page_draws_nodes_and_edges_and_the_job_page_links_to_it(users, dag):
    browser = Client()
    browser.force_login(users["alice"])
    page = browser.get(f"/dags/{dag['dag']}/").content.decode()
    assert 'data-node="A" data-state="queued"' in page and 'data-node="B" data-state="waiting"' in page
    assert 'data-edge="A->B"' in page and 'data-edge="A->C"' in page
    assert "<script" not in page.split('data-testid="dag-graph"')[1].split("</svg>")[0]
    job_page = browser.get(f"/jobs/{dag['jobs'][0]['id']}/").content.decode()
    assert f'href="/dags/{dag["dag"]}/"' in job_page
    other = Client()
    other.force_login(users["bob"])
    assert other.get(f"/dags/{dag['dag']}/").status_code == 404


def test_the_portal_submit_page_takes_a_dag_file_and_shows_its_page(users):
    browser = Client()
    browser.force_login(users["alice"])
    files = [upload(n, c) for n, c in {"a.sub": SUB, "b.sub": SUB, "job.sh": JOB}.items()]
    response = browser.post("/submit/", {"mode": "file", "submission": upload("pipeline.dag", DIAMOND), "files": files})
    dag = Dag.objects.get(owner=users["alice"])
    assert response.status_code == 302 and response["Location"] == f"/dags/{dag.id}/"
    bad = browser.post("/submit/", {"mode": "file", "submission": upload("p.dag", "JOB A a.sub\nPARENT A CHILD X\n")})
    assert "p.dag:2: PARENT/CHILD: no node &#x27;X&#x27; — define it with a JOB line" in bad.content.decode()


def test_the_dag_answer_has_the_schema_keys_and_the_command_line_prints_the_same(alice, dag, settings):
    settings.DCT_SERVER = ""
    answer = alice.get(f"/api/dags/{dag['dag']}/").json()
    assert list(answer) == schema_keys(alice, "Dag")
    assert list(answer["nodes"][0]) == schema_keys(alice, "DagNode")
    assert command_json("dag", str(dag["dag"])) == answer
    assert list(dag["jobs"][0]) == schema_keys(alice, "Job")


def test_the_dag_page_refreshes_its_live_part_while_it_runs(users, dag):
    browser = Client()
    browser.force_login(users["alice"])
    part = browser.get(f"/dags/{dag['dag']}/", headers={"HX-Request": "true"}).content.decode()
    assert part.startswith('<div id="dag-live" hx-get=') and "<html" not in part
    Dag.objects.filter(id=dag["dag"]).update(state="failed")
    page = browser.get(f"/dags/{dag['dag']}/").content.decode()
    assert "hx-get" not in page.split('id="dag-live"')[1].split(">")[0], "an ended DAG's page stops asking"
    assert 'data-testid="dag-rerun"' in page


def test_a_dags_stored_files_count_towards_the_quota_and_a_user_over_it_cannot_submit_one(alice, users, settings):
    from django.core.cache import cache

    from dctoolkit.operations.storage import user_storage_bytes

    big = "#!/bin/sh\n" + "#" * (2 * 1024 * 1024) + "\n"
    response = submit(alice, DIAMOND, {"a.sub": SUB, "b.sub": SUB, "job.sh": big}, name="pipeline.dag")
    assert response.status_code == 201, response.content
    Submission.objects.all().delete()  # its jobs too: only the DAG's own copies are left
    assert user_storage_bytes(users["alice"].pk, fresh=True) >= 2 * 1024 * 1024
    settings.DCT_USER_QUOTA_MB = 1
    cache.clear()
    again = submit(alice, DIAMOND, {"a.sub": SUB, "b.sub": SUB, "job.sh": JOB}, name="pipeline.dag")
    assert again.status_code == 400 and "over your quota of 1 MB (DCT_USER_QUOTA)" in again.json()["error"]
    assert Dag.objects.count() == 1
