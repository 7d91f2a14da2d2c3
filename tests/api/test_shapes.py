"""One serializer per shape: what the API sends, what `--json` prints and what the schema says agree.

And one rule for whose jobs a user sees (Job.objects.visible_to), asked of
the API, the portal and the command line alike.
"""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from dctoolkit.accounts.models import Account
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.transitions import CONTROLS, cancel
from dctoolkit.nodes.models import Node
from tests.api.conftest import HELLO, client_for, submit


def schema_keys(client, component: str) -> list[str]:
    schema = client.get("/api/schema/?format=json").json()
    return list(schema["components"]["schemas"][component]["properties"])


def command_json(*args: str, user: str | None = "alice") -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out, **({"user": user} if user else {}))
    return json.loads(out.getvalue())


@pytest.fixture
def local(settings):
    settings.DCT_SERVER = ""


@pytest.fixture
def finished(job, storage):
    """alice's job, finished, with an output file."""
    Job.objects.filter(id=job["id"]).update(
        state=JobState.SUCCEEDED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        run_seconds=185.0,
        cpu_seconds=float("inf"),
        max_rss_mb=42.0,
        exit_code=0,
    )
    folder = Job.objects.get(id=job["id"]).folder() / "outputs" / "sub"
    folder.mkdir(parents=True)
    (folder / "result.csv").write_text("1,2\n")
    return job["id"]


def test_a_job_answer_has_exactly_the_schema_keys_in_order(alice, job):
    answer = alice.get(f"/api/jobs/{job['id']}/").json()
    assert list(answer) == schema_keys(alice, "Job")
    assert list(alice.get("/api/jobs/").json()["jobs"][0]) == schema_keys(alice, "Job")


def test_node_usage_and_file_answers_have_exactly_the_schema_keys(alice, finished):
    Node.objects.create(name="n1", cpus=2, threads=4, slots=2, memory_total_mb=1024, memory_available_mb=512)
    submit(alice, "executable = hello.py\n", {"hello.py": HELLO})  # queued: alice has a usage row
    assert list(alice.get("/api/nodes/").json()["nodes"][0]) == schema_keys(alice, "Node")
    assert list(alice.get("/api/usage/").json()["users"][0]) == schema_keys(alice, "UsageRow")
    files = alice.get(f"/api/jobs/{finished}/files/").json()["files"]
    assert files == [{"path": "sub/result.csv", "size": 4}]
    assert list(files[0]) == schema_keys(alice, "OutputFile")


def test_json_on_the_command_line_is_the_api_answer(alice, users, finished, local):
    answer = alice.get(f"/api/jobs/{finished}/").json()
    assert answer["cpu_seconds"] is None  # inf is not JSON: null, in both
    assert command_json("job", str(finished)) == answer
    assert command_json("jobs", "--all") == {"jobs": [answer]}
    Node.objects.create(name="n1", cpus=2, threads=4, slots=2, memory_total_mb=1024, memory_available_mb=512)
    Account.objects.create(user=users["alice"], share=2.0, usage=100.0, usage_at=timezone.now())
    assert command_json("nodes", user=None) == alice.get("/api/nodes/").json()
    assert command_json("usage", user=None) == alice.get("/api/usage/").json()
    assert command_json("usage", user=None)["users"][0]["share"] == 2.0


def test_times_keep_the_contracts_format_not_drfs(alice, job):
    submitted = alice.get(f"/api/jobs/{job['id']}/").json()["submitted_at"]
    assert submitted.endswith("+00:00") and len(submitted.split(".")[1]) == len("123456+00:00")


# --- whose jobs ---------------------------------------------------------------------------


def test_visible_to_is_own_jobs_all_for_staff_none_for_anonymous(users, job):
    from django.contrib.auth.models import AnonymousUser

    ids = [job["id"]]
    assert list(Job.objects.visible_to(users["alice"]).values_list("id", flat=True)) == ids
    assert list(Job.objects.visible_to(users["bob"]).values_list("id", flat=True)) == []
    assert list(Job.objects.visible_to(users["root"]).values_list("id", flat=True)) == ids
    assert list(Job.objects.visible_to(AnonymousUser()).values_list("id", flat=True)) == []


def test_another_users_job_is_not_found_everywhere(users, bob, root, job, local):
    assert bob.get(f"/api/jobs/{job['id']}/").status_code == 404
    assert bob.post(f"/api/jobs/{job['id']}/cancel/").status_code == 404
    assert bob.get(f"/api/jobs/{job['id']}/files/").status_code == 404
    portal = Client()
    portal.force_login(users["bob"])
    assert portal.get(f"/jobs/{job['id']}/").status_code == 404
    for command in ("job", "cancel", "logs", "results"):
        with pytest.raises(CommandError, match=f"no job {job['id']} of yours"):
            call_command(command, str(job["id"]), user="bob", stdout=StringIO())
    # Staff see it in each.
    assert root.get(f"/api/jobs/{job['id']}/").status_code == 200
    portal.force_login(users["root"])
    assert portal.get(f"/jobs/{job['id']}/").status_code == 200
    assert command_json("job", str(job["id"]), user="root")["id"] == job["id"]


def test_staff_list_their_own_jobs_unless_they_ask_for_everyones(root, job):
    assert root.get("/api/jobs/").json()["jobs"] == []
    assert [j["id"] for j in root.get("/api/jobs/?all_users=1").json()["jobs"]] == [job["id"]]


# --- actions and pages ---------------------------------------------------------------------


def test_an_action_the_state_refuses_is_409_with_the_job_unchanged(alice, job, users):
    cancel(Job.objects.get(id=job["id"]))
    response = alice.post(f"/api/jobs/{job['id']}/hold/")
    assert response.status_code == 409
    assert response.json() == {"error": f"job {job['id']} is cancelled: {CONTROLS['hold'].refusal}"}
    assert alice.get(f"/api/jobs/{job['id']}/").json()["state"] == "cancelled"


def test_pages_keep_the_callers_query_and_answer_an_empty_page_past_the_end(alice):
    for _ in range(51):
        assert submit(alice, "executable = hello.py\n", {"hello.py": HELLO}).status_code == 201
    first = alice.get("/api/jobs/?state=queued,held&page=1").json()
    assert (len(first["jobs"]), first["count"]) == (50, 51)
    assert first["next"] == "http://testserver/api/jobs/?state=queued%2Cheld&page=2"
    second = alice.get(first["next"]).json()
    assert (len(second["jobs"]), second["next"]) == (1, None)
    assert alice.get("/api/jobs/?page=9").json() == {"jobs": [], "count": 51, "next": None}


# --- one output listing ----------------------------------------------------------------------


def test_local_results_copies_what_the_api_lists_and_follows_no_link(alice, finished, local, tmp_path):
    outputs = Job.objects.get(id=finished).folder() / "outputs"
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "key").write_text("not the job's")
    (outputs / "link").symlink_to(secret, target_is_directory=True)
    listed = alice.get(f"/api/jobs/{finished}/files/").json()["files"]
    assert [f["path"] for f in listed] == ["sub/result.csv"]
    dest = tmp_path / "got"
    call_command("results", str(finished), "--dest", str(dest), user="alice", stdout=StringIO())
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == ["sub/result.csv"]  # no stdout/stderr were written by this job


def test_the_shapes_fast_loop_writes_what_drfs_own_loop_writes(finished, job, users):
    from rest_framework import serializers

    from dctoolkit.jobs.scheduling.snapshot import Capacity
    from dctoolkit.jobs.web.serializers import JobSerializer, NodeSerializer, node_row

    node = Node.objects.create(name="n1", cpus=2, threads=4, slots=2, memory_total_mb=1024, memory_available_mb=512)
    Job.objects.filter(id=finished).update(node=node)
    queued = submit(client_for(users["alice"]), "executable = hello.py\n", {"hello.py": HELLO}).json()["jobs"][0]
    context = {"now": timezone.now(), "reasons": {queued["id"]: "waits for a slot"}}
    for job_id in (finished, queued["id"]):
        row = Job.objects.select_related("owner", "node").get(id=job_id)
        shape = JobSerializer(context=context)
        assert shape.to_representation(row) == serializers.Serializer.to_representation(shape, row)
    shape = NodeSerializer()
    nrow = node_row(node, Capacity(cpus=1, memory_mb=256, jobs=1), timezone.now())
    assert shape.to_representation(nrow) == serializers.Serializer.to_representation(shape, nrow)
