"""Attacks on the portal: guessing passwords, signing up in production, huge numbers in URLs, odd
file names, huge files, and a queue of 100,000 jobs.  None may answer 500, and each says what is wrong."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from dctoolkit.jobs.intake.parse import MAX_SUBMISSION_BYTES
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.web.views import TAIL_BYTES
from tests.portal.conftest import make_job

pytestmark = pytest.mark.django_db

LOCKOUT = (
    "Too many failed log-ins for this user name from your address: log-in is refused for 15 minutes. "
    "Wait, then try again; if you forgot your password, ask the staff to reset it."
)


def log_in(client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


# --- accounts ------------------------------------------------------------------------


def test_six_wrong_passwords_lock_the_user_out_even_with_the_right_one_and_the_form_says_why(client, owner):
    for attempt in range(4):
        response = log_in(client, "alice", f"guess-{attempt}")
        assert response.status_code == 200 and "did not match" in response.text
    for attempt in range(4, 6):  # the 5th reaches the limit; the 6th is refused without a check
        response = log_in(client, "alice", f"guess-{attempt}")
        assert response.status_code == 429
        assert LOCKOUT in response.text
        assert 'name="password"' in response.text, "the login form itself, not a bare 403 page"
    response = log_in(client, "alice", "alice-pass-123")
    assert response.status_code == 429 and LOCKOUT in response.text
    assert client.get("/").status_code == 302, "still not logged in"


def test_the_lockout_is_per_user_and_address(client, owner, other):
    for attempt in range(6):
        log_in(client, "alice", f"guess-{attempt}")
    # Policy: the pair (user name, address) is locked.  Another user behind the same address
    # (a lab's NAT) still logs in, and so does the owner from another address.
    assert log_in(client, "bob", "bob-pass-123").status_code == 302
    client.post("/accounts/logout/")
    assert log_in(client, "alice", "alice-pass-123", address="10.1.2.3").status_code == 302


def test_forty_fast_guesses_are_not_all_answered(client, owner):
    answers = [log_in(client, "alice", f"guess-{i}").status_code for i in range(40)]
    assert answers.count(200) == 4 and answers.count(429) == 36


def test_a_right_password_before_the_limit_clears_the_failures(client, owner):
    for attempt in range(4):
        log_in(client, "alice", f"guess-{attempt}")
    assert log_in(client, "alice", "alice-pass-123").status_code == 302
    client.post("/accounts/logout/")
    for attempt in range(4):
        assert log_in(client, "alice", f"again-{attempt}").status_code == 200


def test_api_tokens_are_not_throttled_by_failed_portal_logins(client, owner):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    for attempt in range(6):
        log_in(client, "alice", f"guess-{attempt}")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    assert api.get("/api/jobs/").status_code == 200


def test_production_turns_sign_up_off_unless_asked(tmp_path):
    import subprocess
    import sys

    def signup_setting(**env) -> str:
        code = "from django.conf import settings; print(settings.DCT_ALLOW_SIGNUP)"
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DCT_")},
            "DJANGO_SETTINGS_MODULE": "dctoolkit.settings",
            "SECRET_KEY": "x" * 50,
            "DCT_VAR": str(tmp_path),
            **env,
        }
        command = [sys.executable, "-c", f"import django; django.setup(); {code}"]
        return subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout.strip()

    assert signup_setting(DCT_PRODUCTION="1") == "False"
    assert signup_setting(DCT_PRODUCTION="1", DCT_ALLOW_SIGNUP="1") == "True"
    assert signup_setting(DCT_PRODUCTION="0") == "True"


def test_with_sign_up_off_the_page_says_so_and_the_login_page_has_no_link(client, settings):
    settings.DCT_ALLOW_SIGNUP = False
    response = client.get("/accounts/signup/")
    assert response.status_code == 404
    assert "Sign-up is turned off here" in response.text and "ask them for one" in response.text
    response = client.post("/accounts/signup/", {"username": "mallory", "password1": "x-long-pass-1", "password2": "x"})
    assert response.status_code == 404 and not User.objects.filter(username="mallory").exists()
    assert "/accounts/signup/" not in client.get("/accounts/login/").text


# --- bad numbers -------------------------------------------------------------------------


HUGE_IDS = ["9" * 5000, "9" * 20, str(2**63), str(2**63 - 1)]


@pytest.mark.parametrize("job_id", HUGE_IDS)
def test_a_huge_job_id_in_a_url_is_404(client, owner, job_id):
    client.force_login(owner)
    for url in (f"/jobs/{job_id}/", f"/jobs/{job_id}/files/stdout"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/jobs/{job_id}/cancel/").status_code == 404


@pytest.mark.parametrize("page", ["1e20", "99999999999999999999", "9" * 5000, "-3", "²"])
def test_a_bad_page_number_in_the_portal_is_a_page_not_a_500(client, owner, page):
    client.force_login(owner)
    make_job(owner)
    make_job(owner, state=JobState.QUEUED)
    for url in ("/completed/", "/queue/"):
        assert client.get(url, {"page": page}).status_code == 200, url
    assert client.get("/completed/", {"submission": "9" * 30}).status_code == 200


def test_a_job_stored_with_an_infinite_runtime_still_shows_everywhere(client, owner, staff):
    # A row written before the bounds (max_runtime = 400 digits was stored as inf).
    job = make_job(owner, max_runtime_seconds=float("inf"), run_seconds=float("inf"))
    queued = make_job(owner, state=JobState.QUEUED, max_runtime_seconds=float("inf"))
    client.force_login(owner)
    for url in ("/", "/completed/", "/queue/", f"/jobs/{job.id}/", f"/jobs/{queued.id}/"):
        assert client.get(url).status_code == 200, url
    assert client.get("/api/jobs/").status_code == 200
    client.force_login(staff)
    assert client.get("/api/jobs/", {"all_users": "1"}).status_code == 200
    assert client.get("/queue/").status_code == 200


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def test_a_400_byte_upload_name_is_a_form_error_naming_the_limit(client, owner):
    client.force_login(owner)
    name = "é" * 200 + ".py"  # 403 bytes in 203 characters
    form = {"mode": "program", "executable": upload(name, b"print(1)\n"), "copies": "1"}
    response = client.post("/submit/", form)
    assert response.status_code == 200
    (message,) = response.context["form"].errors["executable"]
    assert re.fullmatch(r"'é{40}…': the file name is 403 bytes; the limit is 255 bytes; rename the file\.", message)
    files = {"mode": "file", "submission": upload("job.txt", b"executable = a.py\n"), "files": [upload(name, b"x")]}
    assert "the limit is 255 bytes" in client.post("/submit/", files).context["form"].errors["files"][0]
    assert not Job.objects.exists()


def test_a_submission_naming_a_400_byte_file_is_a_located_error(client, owner):
    client.force_login(owner)
    text = f"executable = {'a' * 400}.py\n".encode()
    errors = client.post("/submit/", {"mode": "file", "submission": upload("job.txt", text)}).context["form"].errors
    assert errors["submission"] == [
        "job.txt:1: the executable file name '" + "a" * 40 + "… (403 characters)' is 403 bytes; "
        "the limit is 255 bytes; rename the file"
    ]


def test_a_non_utf8_output_file_name_does_not_break_the_job_page(client, job):
    outputs = os.fsencode(job.folder() / "outputs")
    fd = os.open(outputs + b"/bad-\xff\xfe.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    client.force_login(job.owner)
    response = client.get(f"/jobs/{job.id}/")
    assert response.status_code == 200
    assert "result.csv" in response.text, "the other outputs are still listed"
    assert client.get(f"/jobs/{job.id}/", HTTP_HX_REQUEST="true").status_code == 200


def make_deep_tree(root, depth: int) -> None:
    """root/d/d/.../d/bottom.txt, `depth` folders deep, made without recursion (os.makedirs recurses)."""
    fd = os.open(root, os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


def remove_deep_tree(root, depth: int) -> None:
    path = os.path.join(root, *["d"] * depth)
    os.unlink(os.path.join(path, "bottom.txt"))
    for _ in range(depth):
        os.rmdir(path)
        path = os.path.dirname(path)


def test_an_output_tree_1100_folders_deep_does_not_break_the_job_page(client, job):
    outputs = job.folder() / "outputs"
    make_deep_tree(outputs, 1100)
    try:
        client.force_login(job.owner)
        response = client.get(f"/jobs/{job.id}/")
        assert response.status_code == 200 and "bottom.txt" in response.text
    finally:
        remove_deep_tree(outputs, 1100)


# --- bounded work --------------------------------------------------------------------------


def test_a_submission_file_over_1mb_is_a_form_error_and_nothing_is_queued(client, owner):
    client.force_login(owner)
    text = b"executable = fit.py\n" + b"# padding\n" * (MAX_SUBMISSION_BYTES // 10)
    response = client.post("/submit/", {"mode": "file", "submission": upload("big.txt", text)})
    assert response.context["form"].errors["submission"] == [
        f"big.txt: the submission file is {len(text):,} bytes; the limit is 1,048,576 (1 MB); "
        "put long lists and big values in a data file the job reads."
    ]
    assert not Submission.objects.exists()


def test_the_job_page_shows_only_the_tail_of_a_huge_stdout_with_a_link_to_all_of_it(client, owner):
    head, tail = "FIRST LINE\n", "LAST LINE\n"
    job = make_job(owner, stdout=head + "x" * (5 * 1024 * 1024) + "\n" + tail)
    client.force_login(owner)
    response = client.get(f"/jobs/{job.id}/")
    assert response.status_code == 200
    assert "LAST LINE" in response.text and "FIRST LINE" not in response.text
    assert len(response.content) < TAIL_BYTES * 3
    assert f'href="/jobs/{job.id}/files/stdout"' in response.text
    assert "Showing the end" in response.text


def test_a_huge_submission_stored_before_the_limit_shows_only_its_start(client, owner):
    job = make_job(owner)
    Submission.objects.filter(id=job.submission_id).update(text="executable = fit.py\n" + "# pad\n" * 1_000_000)
    client.force_login(owner)
    response = client.get(f"/jobs/{job.id}/")
    assert response.status_code == 200 and len(response.content) < TAIL_BYTES * 3
    assert "Showing the start; the link has all of it." in response.text


def test_a_download_answers_a_byte_range(client, job):
    client.force_login(job.owner)
    response = client.get(f"/jobs/{job.id}/files/stdout", HTTP_RANGE="bytes=6-9")
    assert response.status_code == 206 and response["Content-Range"] == "bytes 6-9/19"
    assert b"".join(response.streaming_content) == b"from"


def queue_of(owner: User, count: int) -> None:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="executable = fit.py\n", job_count=count)
    now = timezone.now() - timedelta(minutes=1)
    if count > 1000:  # made by the database (bench.rows): bulk_create of 99,000 took most of the test
        from bench.rows import insert_jobs

        insert_jobs(count, [(owner.id, sub.id)], values={"name": "fit", "executable": "fit.py", "submitted_at": now})
        return
    Job.objects.bulk_create(
        (Job(submission=sub, owner=owner, name="fit", process=i, executable="fit.py", submitted_at=now)
         for i in range(count)),
        batch_size=5000,
    )  # fmt: skip


def test_the_queue_page_with_100000_queued_jobs_is_one_cheap_page_of_50(
    client, owner, other, staff, node, django_assert_max_num_queries
):
    queue_of(owner, 99_000)
    queue_of(other, 1_000)
    client.force_login(staff)
    with django_assert_max_num_queries(30):
        response = client.get("/queue/")
    assert response.status_code == 200
    waiting = response.context["waiting"]
    assert len(waiting) == 50
    assert "100000 queued in all" in response.text
    assert 'data-testid="waiting-pager"' in response.text and "Page 1 of 2000" in response.text
    # Fair-share order, as the scheduler places them: both users have no usage, so they take turns, the lower
    # user id (alice) first.
    assert [j["position"] for j in waiting] == list(range(1, 51))
    assert [j["owner"] for j in waiting[:4]] == ["alice", "bob", "alice", "bob"]
    # The 3 s poll asks for the page it shows, and costs the same.
    assert 'hx-get="/queue/?page=1"' in response.text
    with django_assert_max_num_queries(30):
        last = client.get("/queue/", {"page": "2000"}, HTTP_HX_REQUEST="true")
    positions = [j["position"] for j in last.context["waiting"]]
    assert positions == list(range(99_951, 100_001))
    # Bob's 1000 jobs were all served in the first 2000 turns: the end of the queue is alice's.
    assert {j["owner"] for j in last.context["waiting"]} == {"alice"}
    assert "jobs ahead of it" in last.context["waiting"][0]["reason"] or last.context["waiting"][0]["reason"]


def test_a_users_queue_page_shows_their_place_in_the_whole_queue(client, owner, other, node):
    queue_of(owner, 120)
    queue_of(other, 60)
    client.force_login(other)
    response = client.get("/queue/", {"page": "2"})
    waiting = response.context["waiting"]
    # Equal usage: alice and bob take turns (alice first), so bob's 51st to 60th jobs are 102nd, 104th, ... 120th.
    assert [j["position"] for j in waiting] == list(range(102, 121, 2))
    assert {j["owner"] for j in waiting} == {"bob"}
