"""The HTTP API: every endpoint, its JSON shapes, and who may see what."""

import pytest
from django.utils import timezone

from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.web.api import JobPagination
from dctoolkit.lib import pages
from tests.api.conftest import HELLO, submit

pytestmark = pytest.mark.django_db

JOB_FIELDS = {
    "id", "name", "owner", "state", "node", "exit_code", "attempts", "reason", "submitted_at", "started_at",
    "finished_at", "run_seconds", "cpu_seconds", "max_rss_mb", "request_cpus", "request_memory_mb", "request_gpus",
}  # fmt: skip


def finish(job_id: int, files: dict[str, str] | None = None, state: JobState = JobState.SUCCEEDED) -> Job:
    """End a job as a node would, leaving stdout/stderr/outputs in its folder."""
    Job.objects.filter(id=job_id).update(state=state, exit_code=0, finished_at=timezone.now(), run_seconds=1.5)
    job = Job.objects.get(id=job_id)
    for rel, content in (files or {}).items():
        path = job.folder() / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return job


# --- who may call ------------------------------------------------------------


@pytest.mark.parametrize(
    "method,url",
    [
        ("get", "/api/jobs/"),
        ("post", "/api/jobs/"),
        ("get", "/api/jobs/1/"),
        ("post", "/api/jobs/1/cancel/"),
        ("get", "/api/jobs/1/stdout"),
        ("get", "/api/jobs/1/files/x"),
        ("get", "/api/nodes/"),
        ("get", "/api/usage/"),
    ],
)
def test_anonymous_requests_get_401_with_a_challenge(client, method, url, users):
    response = getattr(client, method)(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_a_bad_token_gets_401(client, users):
    response = client.get("/api/jobs/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_session_login_works_too(client, users, job):
    client.force_login(users["alice"])
    response = client.get(f"/api/jobs/{job['id']}/")
    assert response.status_code == 200 and response.json()["id"] == job["id"]


def test_another_users_job_is_404_everywhere(bob, job, storage):
    finish(job["id"], {"stdout": "secret\n", "outputs/r.txt": "secret\n"})
    for url in ("", "stdout", "stderr", "files/", "files/r.txt"):
        assert bob.get(f"/api/jobs/{job['id']}/{url}").status_code == 404, url
    for verb in ("cancel", "hold", "release"):
        assert bob.post(f"/api/jobs/{job['id']}/{verb}/").status_code == 404, verb
    assert Job.objects.get(id=job["id"]).state == JobState.SUCCEEDED
    assert bob.get("/api/jobs/").json() == {"jobs": [], "count": 0, "next": None}


def test_staff_see_and_cancel_anyones_job(root, job):
    assert root.get(f"/api/jobs/{job['id']}/").json()["owner"] == "alice"
    response = root.post(f"/api/jobs/{job['id']}/cancel/")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert [j["id"] for j in root.get("/api/jobs/?all_users=1").json()["jobs"]] == [job["id"]]


def test_only_staff_may_list_everyones_jobs(bob, job):
    response = bob.get("/api/jobs/?all_users=1")
    assert response.status_code == 403
    assert response.json() == {"error": "only staff see everyone's jobs; leave out all_users"}


# --- submitting --------------------------------------------------------------


def test_submit_queues_jobs_and_answers_201_with_the_cli_shape(alice):
    text = "executable = hello.py\ndata = data.csv\narguments = $(Process)\nrequest_cpus = 2\nqueue = 3\n"
    response = submit(alice, text, {"hello.py": HELLO, "data.csv": "a,b\n"})
    assert response.status_code == 201, response.content
    jobs = response.json()["jobs"]
    assert len(jobs) == 3 and set(jobs[0]) >= JOB_FIELDS
    assert [j["state"] for j in jobs] == ["queued"] * 3
    assert [j["arguments"] for j in jobs] == [["0"], ["1"], ["2"]]
    assert jobs[0]["owner"] == "alice" and jobs[0]["request_cpus"] == 2
    sub = Job.objects.get(id=jobs[0]["id"]).submission
    assert (sub.folder() / "data.csv").read_text() == "a,b\n"
    assert (sub.folder() / "hello.py").read_text() == HELLO


def test_a_bad_submission_is_400_with_file_and_line(alice):
    response = submit(alice, "executable = hello.py\nexecutabel = x\n", {"hello.py": HELLO})
    assert response.status_code == 400
    assert response.json() == {"error": "job.txt:2: unknown key 'executabel' — did you mean 'executable'?"}
    assert not Job.objects.exists()


def test_a_missing_named_file_is_400_naming_it(alice):
    response = submit(alice, "executable = hello.py\ndata = data.csv\n", {"hello.py": HELLO}, name="fit.txt")
    assert response.status_code == 400
    assert response.json() == {"error": "fit.txt:2: file 'data.csv' not found; check the name and that it exists"}


def test_an_uploaded_compiled_program_counts_as_runnable_and_plain_text_does_not(alice):
    elf = b"\x7fELF\x02\x01\x01" + bytes(100)
    assert submit(alice, "executable = prog\n", {"prog": elf}).status_code == 201
    response = submit(alice, "executable = notes\n", {"notes": "just text\n"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("job.txt:1: 'notes' cannot be run: it is not a .py file")


def test_a_broken_multipart_body_is_400_in_the_error_shape(alice):
    response = alice.generic("POST", "/api/jobs/", b"--x\r\nnot a part", content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.json()["error"].startswith("the upload is not readable multipart/form-data (")


def test_a_body_without_a_content_type_is_415_in_the_error_shape(alice):
    # Found by schemathesis: a body sent with no Content-Type at all.
    response = alice.generic("POST", "/api/jobs/", "vö".encode(), content_type="")
    assert response.status_code == 415
    assert response.json()["error"].endswith(
        "send multipart/form-data: the field 'submission' and one 'files' field per file"
    )


def test_no_submission_field_is_400(alice):
    response = alice.post("/api/jobs/", {}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"error": "send the submission file in the multipart field 'submission'"}


def test_an_upload_over_the_limit_is_413_and_queues_nothing(alice, settings):
    settings.DCT_MAX_UPLOAD_MB = 1
    response = submit(alice, "executable = hello.py\ndata = big\n", {"hello.py": HELLO, "big": b"x" * 1_100_000})
    assert response.status_code == 413
    assert response.json() == {
        "error": "the upload is larger than the limit of 1 MB; "
        "send smaller files, or ask the administrator to raise DCT_MAX_UPLOAD_MB"
    }
    assert not Job.objects.exists()


def test_too_many_files_is_413_saying_what_to_do(alice, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    response = submit(alice, "executable = hello.py\n", {"hello.py": HELLO, "a": "1", "b": "2", "c": "3"})
    assert response.status_code == 413
    assert response.json() == {
        "error": "more than 3 files in one upload; pack them into an archive and unpack it in the job"
    }


# --- listing -----------------------------------------------------------------


def test_list_is_newest_first_50_a_page_with_next(alice):
    response = submit(alice, "executable = hello.py\nqueue = 51\n", {"hello.py": HELLO})
    ids = [j["id"] for j in response.json()["jobs"]]
    first = alice.get("/api/jobs/").json()
    assert first["count"] == 51 and len(first["jobs"]) == 50
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:50]
    assert first["next"] == "http://testserver/api/jobs/?page=2"
    second = alice.get(first["next"]).json()
    assert [j["id"] for j in second["jobs"]] == [ids[0]] and second["next"] is None


def test_list_count_stays_exact_past_the_cap_while_next_pages_on(alice, monkeypatch):
    """Past the pagers' cap (pages.COUNT_CAP, 10,000; 3 here) the API still gives the contract's exact
    `count` (one whole COUNT), and `next` leads through every job."""
    monkeypatch.setattr(pages, "COUNT_CAP", 3)
    monkeypatch.setattr(JobPagination, "page_size", 2)
    ids = [j["id"] for j in submit(alice, "executable = hello.py\nqueue = 7\n", {"hello.py": HELLO}).json()["jobs"]]
    first = alice.get("/api/jobs/").json()
    assert set(first) == {"jobs", "count", "next"} and first["count"] == 7
    assert first["next"] == "http://testserver/api/jobs/?page=2"
    seen, url, bodies = [], "/api/jobs/", 0
    while url:
        body = alice.get(url).json()
        assert body["count"] == 7
        seen += [j["id"] for j in body["jobs"]]
        url, bodies = body["next"], bodies + 1
    assert seen == ids[::-1] and bodies == 4
    assert alice.get("/api/jobs/?page=9").json() == {"jobs": [], "count": 7, "next": None}


def test_list_includes_finished_jobs_and_filters_by_state_and_name(alice):
    a = submit(alice, "executable = hello.py\nname = alpha\n", {"hello.py": HELLO}).json()["jobs"][0]
    b = submit(alice, "executable = hello.py\nname = beta\n", {"hello.py": HELLO}).json()["jobs"][0]
    finish(a["id"])
    assert [j["id"] for j in alice.get("/api/jobs/").json()["jobs"]] == [b["id"], a["id"]]
    assert [j["id"] for j in alice.get("/api/jobs/?state=succeeded").json()["jobs"]] == [a["id"]]
    assert [j["id"] for j in alice.get("/api/jobs/?state=queued,held").json()["jobs"]] == [b["id"]]
    assert [j["id"] for j in alice.get("/api/jobs/?name=BET").json()["jobs"]] == [b["id"]]
    today = timezone.now().date().isoformat()
    assert alice.get(f"/api/jobs/?since={today}&until={today}").json()["count"] == 2
    assert alice.get("/api/jobs/?until=2000-01-01").json()["count"] == 0


def test_list_by_ids_answers_every_asked_job_of_yours_on_one_page(alice, bob):
    """A workflow tool's poll: `?id=` with more ids than a page holds, in one request; others' jobs left out."""
    mine = [j["id"] for j in submit(alice, "executable = hello.py\nqueue = 60\n", {"hello.py": HELLO}).json()["jobs"]]
    theirs = submit(bob, "executable = hello.py\n", {"hello.py": HELLO}).json()["jobs"][0]["id"]
    finish(mine[0])
    asked = ",".join(map(str, [*mine, theirs, 999999, mine[0]]))
    page = alice.get(f"/api/jobs/?id={asked}").json()
    assert page["count"] == 60 and page["next"] is None
    assert [j["id"] for j in page["jobs"]] == mine[::-1]
    assert {j["state"] for j in page["jobs"]} == {"queued", "succeeded"}
    assert [j["id"] for j in alice.get(f"/api/jobs/?id={mine[3]}&state=queued").json()["jobs"]] == [mine[3]]


@pytest.mark.parametrize(
    "query,message",
    [
        ("id=12,x", "id='12,x': 'x' is not a job id; write job ids separated by commas (id=12,13)"),
        ("id=", "id='': '' is not a job id; write job ids separated by commas (id=12,13)"),
        ("id=" + ",".join(map(str, range(1, 1002))), "id asks for 1001 jobs; at most 1000 a request"),
        (
            "state=done",
            "unknown state 'done'; use one of waiting, queued, held, dispatched, running, suspended, succeeded, "
            "failed, cancelled",
        ),
        ("page=0", "page must be a whole number of at least 1"),
        ("since=yesterday", "since='yesterday' is not a date; write it like 2026-11-25 or 2026-11-25T14:00:00+00:00"),
    ],
)
def test_bad_list_parameters_are_400_saying_how_to_write_them(alice, query, message):
    response = alice.get(f"/api/jobs/?{query}")
    assert response.status_code == 400 and response.json() == {"error": message}


# --- one job and its actions --------------------------------------------------


def test_one_job_is_the_job_object_itself(alice, job):
    data = alice.get(f"/api/jobs/{job['id']}/").json()
    assert set(data) >= JOB_FIELDS and data["id"] == job["id"] and data["state"] == "queued"
    assert data["reason"], "a waiting job says why it waits"


def test_hold_release_cancel_answer_the_job_after_the_change(alice, job):
    url = f"/api/jobs/{job['id']}"
    assert alice.post(f"{url}/hold/").json()["state"] == "held"
    assert alice.post(f"{url}/release/").json()["state"] == "queued"
    assert alice.post(f"{url}/cancel/").json()["state"] == "cancelled"


def test_an_action_the_state_refuses_is_409_saying_why(alice, job):
    response = alice.post(f"/api/jobs/{job['id']}/release/")
    assert response.status_code == 409
    assert response.json() == {"error": f"job {job['id']} is queued: only held jobs can be released"}


def test_unknown_job_is_404(alice, users):
    assert alice.get("/api/jobs/999999/").status_code == 404


# --- output ------------------------------------------------------------------


def test_stdout_and_stderr_are_text_and_stdout_reads_from_an_offset(alice, job):
    finish(job["id"], {"stdout": "hello\nworld\n", "stderr": "oops\n"})
    response = alice.get(f"/api/jobs/{job['id']}/stdout")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert response.content == b"hello\nworld\n" and response["X-Job-State"] == "succeeded"
    assert alice.get(f"/api/jobs/{job['id']}/stdout?offset=6").content == b"world\n"
    assert alice.get(f"/api/jobs/{job['id']}/stderr").content == b"oops\n"


def test_output_of_a_job_that_has_not_started_is_empty(alice, job):
    response = alice.get(f"/api/jobs/{job['id']}/stdout")
    assert response.status_code == 200 and response.content == b"" and response["X-Job-State"] == "queued"


def test_output_files_are_listed_and_downloaded(alice, job):
    finish(job["id"], {"outputs/result.txt": "42\n", "outputs/sub/deep.txt": "deep\n"})
    listing = alice.get(f"/api/jobs/{job['id']}/files/").json()
    assert listing == {"files": [{"path": "result.txt", "size": 3}, {"path": "sub/deep.txt", "size": 5}]}
    response = alice.get(f"/api/jobs/{job['id']}/files/sub/deep.txt")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"deep\n"


@pytest.mark.parametrize("path", ["../stdout", "..%2Fstdout", "%2E%2E/%2E%2E/%2E%2E/secret", "%2Fetc%2Fpasswd", "link"])
def test_a_path_that_leaves_the_jobs_folder_is_404(alice, job, path, storage):
    j = finish(job["id"], {"stdout": "private\n", "outputs/ok": "ok\n"})
    (storage / "secret").write_text("secret\n")
    (j.folder() / "outputs" / "link").symlink_to(j.folder() / "stdout")
    assert alice.get(f"/api/jobs/{job['id']}/files/ok").status_code == 200
    assert alice.get(f"/api/jobs/{job['id']}/files/{path}").status_code == 404


# --- nodes, usage, schema, docs ---------------------------------------------------


def test_nodes_and_usage_have_the_cli_shapes(alice, job):
    assert alice.get("/api/nodes/").json() == {"nodes": []}
    users = alice.get("/api/usage/").json()["users"]
    assert [(u["user"], u["queued"], u["priority"]) for u in users] == [("alice", 1, 1)]
    assert {"user", "usage", "priority", "running", "queued"} <= set(users[0])


def test_schema_and_docs_are_served_without_the_internet(client):
    schema = client.get("/api/schema/?format=json").json()
    assert {"/api/jobs/", "/api/jobs/{job_id}/cancel/", "/api/nodes/", "/api/usage/"} <= set(schema["paths"])
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "/static/drf_spectacular_sidecar/" in docs
    assert "cdn" not in docs.lower() and "https://" not in docs
