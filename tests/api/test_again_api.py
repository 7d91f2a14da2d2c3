"""Resubmit and edit through the API: new jobs from the stored submission, PATCH of a waiting job."""

import shutil

import pytest
from django.utils import timezone

from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.nodes.models import Node, NodeState
from tests.api.conftest import HELLO, submit


def fail(job_id: int) -> None:
    Job.objects.filter(id=job_id).update(state=JobState.FAILED, exit_code=1, finished_at=timezone.now())


def test_resubmit_of_one_job_of_a_batch_queues_only_that_process_from_the_stored_files(alice):
    text = "executable = hello.py\ndata = in_$(Process).csv\narguments = $(Process)\nqueue = 3\n"
    files = {"hello.py": HELLO, "in_0.csv": "0\n", "in_1.csv": "1\n", "in_2.csv": "2\n"}
    jobs = submit(alice, text, files).json()["jobs"]
    response = alice.post(f"/api/jobs/{jobs[1]['id']}/resubmit/", {}, format="json")
    assert response.status_code == 201, response.content
    (new,) = response.json()["jobs"]
    row = Job.objects.get(id=new["id"])
    assert (row.process, row.arguments, row.inputs, row.state) == (1, ["1"], ["in_1.csv"], JobState.QUEUED)
    assert row.submission_id != Job.objects.get(id=jobs[1]["id"]).submission_id
    assert (row.submission.folder() / "in_1.csv").read_text() == "1\n"
    assert row.submission.job_count == 1


def test_resubmit_failed_of_a_submission_queues_only_the_failed_ones(alice):
    jobs = submit(alice, "executable = hello.py\narguments = $(Process)\nqueue = 4\n", {"hello.py": HELLO}).json()[
        "jobs"
    ]
    fail(jobs[0]["id"])
    fail(jobs[2]["id"])
    sub = Job.objects.get(id=jobs[0]["id"]).submission_id
    response = alice.post(f"/api/submissions/{sub}/resubmit/", {"failed": True}, format="json")
    assert response.status_code == 201, response.content
    made = Job.objects.filter(id__in=[j["id"] for j in response.json()["jobs"]]).order_by("process")
    assert [(j.process, j.arguments) for j in made] == [(0, ["0"]), (2, ["2"])]
    whole = alice.post(f"/api/submissions/{sub}/resubmit/", {}, format="json")
    assert len(whole.json()["jobs"]) == 4


def test_another_users_job_and_submission_are_404_and_nothing_is_queued(alice, bob, job):
    sub = Job.objects.get(id=job["id"]).submission_id
    before = Job.objects.count()
    assert bob.post(f"/api/jobs/{job['id']}/resubmit/", {}, format="json").status_code == 404
    assert bob.post(f"/api/submissions/{sub}/resubmit/", {}, format="json").status_code == 404
    assert bob.patch(f"/api/jobs/{job['id']}/", {"name": "mine"}, format="json").status_code == 404
    assert Job.objects.count() == before
    assert Job.objects.get(id=job["id"]).name != "mine"


def test_a_purged_submission_is_refused_with_that_reason(alice, job):
    sub = Submission.objects.get(jobs__id=job["id"])
    shutil.rmtree(sub.folder())
    response = alice.post(f"/api/jobs/{job['id']}/resubmit/", {}, format="json")
    assert response.status_code == 409
    assert "purged" in response.json()["error"]


def test_failed_asked_of_a_job_that_did_not_fail_is_409(alice, job):
    response = alice.post(f"/api/jobs/{job['id']}/resubmit/", {"failed": True}, format="json")
    assert response.status_code == 409
    assert "not failed" in response.json()["error"]


def test_patch_changes_a_queued_job_and_answers_it(alice, job):
    response = alice.patch(
        f"/api/jobs/{job['id']}/",
        {"request_memory": "1G", "request_cpus": 2, "name": "renamed", "labels": ["ssd"], "max_retries": 2},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "renamed"
    row = Job.objects.get(id=job["id"])
    assert (row.request_memory_mb, row.request_cpus, row.max_retries) == (1024, 2, 2)
    assert row.placement["labels"] == ["ssd"]


def test_patch_with_a_bad_value_is_400_naming_it_and_changes_nothing(alice, job):
    response = alice.patch(f"/api/jobs/{job['id']}/", {"request_cpus": "lots", "name": "x"}, format="json")
    assert response.status_code == 400
    assert "request_cpus" in response.json()["error"]
    assert Job.objects.get(id=job["id"]).name != "x"


def test_patch_of_priority_changes_it_and_of_a_key_not_editable_is_400(alice, job):
    response = alice.patch(f"/api/jobs/{job['id']}/", {"priority": 5}, format="json")
    assert response.status_code == 200, response.json()
    assert Job.objects.get(id=job["id"]).priority == 5
    response = alice.patch(f"/api/jobs/{job['id']}/", {"executable": "other.py"}, format="json")
    assert response.status_code == 400


def test_patch_of_a_running_job_is_409(alice, job):
    Job.objects.filter(id=job["id"]).update(state=JobState.RUNNING)
    response = alice.patch(f"/api/jobs/{job['id']}/", {"name": "x"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == f"job {job['id']} is running: only waiting, queued or held jobs can be edited"


def test_patch_to_a_size_no_node_has_is_400_naming_what_exists(alice, job):
    Node.objects.create(
        name="node-1", state=NodeState.ONLINE, slots=4, cpus=4, threads=4, memory_total_mb=4096,
        memory_available_mb=4096, sandbox=True, last_heartbeat=timezone.now(),
    )  # fmt: skip
    response = alice.patch(f"/api/jobs/{job['id']}/", {"request_memory": "64G"}, format="json")
    assert response.status_code == 400
    assert "4096 MB" in response.json()["error"]
    assert Job.objects.get(id=job["id"]).request_memory_mb != 65536


def test_the_remote_commands_resubmit_and_edit_through_the_api(live_server, users, alice, settings):
    # DCT_SERVER set: ./dct resubmit and ./dct edit go through the endpoints above, same output.
    import io
    import json

    from django.core.management import call_command
    from django.core.management.base import CommandError
    from rest_framework.authtoken.models import Token

    jobs = submit(alice, "executable = hello.py\nqueue = 2\n", {"hello.py": HELLO}).json()["jobs"]
    fail(jobs[1]["id"])
    settings.DCT_SERVER = live_server.url
    settings.DCT_TOKEN = Token.objects.get(user=users["alice"]).key

    def run(*args: str) -> str:
        out = io.StringIO()
        call_command(*args, stdout=out, stderr=io.StringIO())
        return out.getvalue()

    sub = Job.objects.get(id=jobs[0]["id"]).submission_id
    (again,) = json.loads(run("resubmit", "--submission", str(sub), "--failed", "--json"))["jobs"]
    assert Job.objects.get(id=again["id"]).process == 1
    assert run("resubmit", str(jobs[0]["id"]), "--parsable").strip().isdigit()
    assert run("edit", str(again["id"]), "name=remote", "request_memory=1G") == f"job {again['id']}: changed\n"
    assert (Job.objects.get(id=again["id"]).name, Job.objects.get(id=again["id"]).request_memory_mb) == ("remote", 1024)
    with pytest.raises(CommandError, match="request_cpus"):
        run("edit", str(again["id"]), "request_cpus=lots")
    with pytest.raises(CommandError, match=f"job {jobs[1]['id']} is failed: only waiting"):
        run("edit", str(jobs[1]["id"]), "name=x")


def test_patch_changes_a_policy_expression_and_refuses_one_that_does_not_read(alice, job):
    response = alice.patch(f"/api/jobs/{job['id']}/", {"periodic_remove": "NumHolds >= 2"}, format="json")
    assert response.status_code == 200, response.content
    row = Job.objects.get(id=job["id"])
    assert (row.policy, row.periodic_policy) == ({"periodic_remove": "NumHolds >= 2"}, True)
    response = alice.patch(f"/api/jobs/{job['id']}/", {"on_exit_hold": "ExitCode !=", "name": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("on_exit_hold: on_exit_hold = ExitCode !=: not a ClassAd expression")
    row = Job.objects.get(id=job["id"])
    assert (row.policy, row.name) == ({"periodic_remove": "NumHolds >= 2"}, job["name"]), "nothing changed"
