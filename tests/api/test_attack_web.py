"""Attacks on the API and the command line: bad numbers, loader variables, huge uploads and logs.

Every bad value is a 400 (or 404, 413, 416, a CommandError) with a message,
nothing bad is stored, and the owner's pages keep working afterwards.
"""

from __future__ import annotations

import os
from io import BytesIO, StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from dctoolkit.client.remote import Client
from dctoolkit.jobs.intake.parse import MAX_SUBMISSION_BYTES
from dctoolkit.jobs.management.commands.logs import follow
from dctoolkit.jobs.models import Job, JobState
from tests.api.conftest import HELLO, submit

pytestmark = pytest.mark.django_db

HUGE_IDS = ["9" * 5000, "9" * 20, str(2**63)]


def finish(job_id: int, files: dict[str, bytes]) -> Job:
    Job.objects.filter(id=job_id).update(state=JobState.SUCCEEDED, exit_code=0, finished_at=timezone.now())
    job = Job.objects.get(id=job_id)
    for rel, content in files.items():
        path = job.folder() / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return job


# --- bad numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", HUGE_IDS)
@pytest.mark.parametrize("tail", ["", "stdout", "stderr", "files/", "files/x.csv"])
def test_a_huge_job_id_is_a_json_404(alice, job_id, tail):
    response = alice.get(f"/api/jobs/{job_id}/{tail}")
    assert response.status_code == 404 and "detail" in response.json()


@pytest.mark.parametrize("job_id", HUGE_IDS)
@pytest.mark.parametrize("verb", ["cancel", "hold", "release"])
def test_a_huge_job_id_in_an_action_is_a_json_404(alice, job_id, verb):
    assert alice.post(f"/api/jobs/{job_id}/{verb}/").status_code == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=1e20", "page must be a whole number of at least 1"),
        ("page=99999999999999999999", "page must be at most 10,000,000 (50 jobs a page)"),
        ("page=" + "9" * 5000, "page must be at most 10,000,000 (50 jobs a page)"),
        ("page=²", "page must be a whole number of at least 1"),
        (
            "submission=99999999999999999999",
            "submission must be a submission's number, as a job's 'submission' field shows",
        ),
    ],
)
def test_a_bad_number_in_the_list_is_a_400_with_a_message(alice, query, message):
    response = alice.get(f"/api/jobs/?{query}")
    assert response.status_code == 400 and response.json() == {"error": message}


@pytest.mark.parametrize("offset", ["99999999999999999999", "1e5", "-1", "9" * 5000])
def test_a_bad_offset_is_a_400(alice, job, offset):
    response = alice.get(f"/api/jobs/{job['id']}/stdout", {"offset": offset})
    assert response.status_code == 400
    assert response.json() == {"error": "offset must be a whole number of at least 0 (a byte position in the file)"}


DIGITS = "9" * 400
SHOWN = "9" * 40 + "… (400 characters)"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            f"max_runtime = {DIGITS}",
            f"job.txt:2: '{SHOWN}' is longer than the longest duration, 365d; write it like 2h or 30d",
        ),
        (
            f"request_memory = {DIGITS}",
            f"job.txt:2: '{SHOWN}' is more than the largest size, 1024TB; ask for what the job needs, like 4GB",
        ),
        ("client = ²", "job.txt:2: '²' is not a node name; write client = 2 (for node-2) or node = NAME"),
        ("queue = " + "9" * 5000, "job.txt:2: queue has 5,000 digits, which is out of range; use 0 to 100000"),
        (
            "environment = LD_PRELOAD=/storage/evil.so",
            "job.txt:2: 'LD_PRELOAD' may not be set by a job: it makes programs load code the job names; "
            "set it inside your job's script instead",
        ),
    ],
)
def test_a_bad_value_is_a_400_and_nothing_is_stored(alice, line, message):
    response = submit(alice, f"executable = hello.py\n{line}\n", {"hello.py": HELLO})
    assert response.status_code == 400 and response.json() == {"error": message}
    assert not Job.objects.exists()
    assert alice.get("/api/jobs/").status_code == 200


def test_the_padded_ld_preload_of_the_issue_is_refused_at_submit(alice):
    padding = " ".join(f"P{i}={'x' * 1000}" for i in range(300))
    text = f'executable = hello.py\nenvironment = "LD_PRELOAD=/tmp/x.so {padding}"\n'
    response = submit(alice, text, {"hello.py": HELLO})
    assert response.status_code == 400
    assert "bytes; the limit is 65,536 (64 KB) together; pass big inputs as a data file" in response.json()["error"]
    assert not Job.objects.exists()


def test_a_stored_infinite_runtime_does_not_break_the_list_for_good(alice, root, job):
    # A row from before the bounds: the list, the job and staff's list must still answer.
    if connection.vendor == "mysql":
        pytest.skip("MySQL and MariaDB refuse to store inf and NaN: such a row cannot exist there")
    Job.objects.filter(id=job["id"]).update(max_runtime_seconds=float("inf"), cpu_seconds=float("nan"))
    listed = alice.get("/api/jobs/")
    assert listed.status_code == 200 and listed.json()["jobs"][0]["max_runtime_seconds"] is None
    assert alice.get(f"/api/jobs/{job['id']}/").status_code == 200
    assert root.get("/api/jobs/?all_users=1").status_code == 200


def test_a_400_byte_upload_name_is_a_400_naming_the_limit(alice):
    name = "é" * 200 + ".csv"  # 404 bytes
    response = submit(alice, "executable = hello.py\n", {"hello.py": HELLO, name: "x"})
    assert response.status_code == 400
    assert response.json() == {
        "error": f"the uploaded file name '{name[:40]}…' is 404 bytes; the limit is 255 bytes; rename the file"
    }
    assert not Job.objects.exists()


def test_a_non_utf8_output_name_is_left_out_of_the_listing_not_a_500(alice, job):
    done = finish(job["id"], {"outputs/good.csv": b"1\n"})
    fd = os.open(os.fsencode(done.folder() / "outputs") + b"/bad-\xff.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    response = alice.get(f"/api/jobs/{job['id']}/files/")
    assert response.status_code == 200 and response.json() == {"files": [{"path": "good.csv", "size": 2}]}


# --- bounded work -------------------------------------------------------------------------


def test_a_submission_file_over_1mb_is_413_before_it_is_read(alice):
    text = "executable = hello.py\n" + "#" * (MAX_SUBMISSION_BYTES + 10)
    response = submit(alice, text, {"hello.py": HELLO})
    assert response.status_code == 413
    assert response.json() == {
        "error": f"job.txt: the submission file is {len(text):,} bytes; the limit is 1,048,576 (1 MB); "
        "put long lists and big values in a data file the job reads"
    }


BIG = b"".join(b"line %07d\n" % i for i in range(600_000))  # 7.2 MB


@pytest.fixture
def chatty(alice, job) -> dict:
    finish(job["id"], {"stdout": BIG})
    return job


def test_stdout_is_streamed_whole_without_offset(alice, chatty):
    response = alice.get(f"/api/jobs/{chatty['id']}/stdout")
    assert response.status_code == 200 and response.streaming, "never read whole into memory"
    assert response["Content-Length"] == str(len(BIG)) and response["X-Job-State"] == "succeeded"
    assert b"".join(response.streaming_content) == BIG


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-9", 0, 9), ("bytes=100-", 100, len(BIG) - 1), ("bytes=-11", len(BIG) - 11, len(BIG) - 1)],
)
def test_stdout_answers_one_range_with_206(alice, chatty, header, first, last):
    response = alice.get(f"/api/jobs/{chatty['id']}/stdout", HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(BIG)}"
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body == BIG[first : last + 1]


@pytest.mark.parametrize("header", [f"bytes={len(BIG)}-", "bytes=99999999999-", "bytes=-0"])
def test_an_unsatisfiable_range_is_416(alice, chatty, header):
    response = alice.get(f"/api/jobs/{chatty['id']}/stdout", HTTP_RANGE=header)
    assert response.status_code == 416 and response["Content-Range"] == f"bytes */{len(BIG)}"


def test_an_offset_answers_at_most_4mb_and_says_there_is_more(alice, chatty):
    first = alice.get(f"/api/jobs/{chatty['id']}/stdout", {"offset": "0"})
    part = b"".join(first.streaming_content)
    assert len(part) == 4 * 1024 * 1024 and first["X-Output-More"] == "true"
    assert first["X-Output-Size"] == str(len(BIG))
    rest = alice.get(f"/api/jobs/{chatty['id']}/stdout", {"offset": str(len(part))})
    body = b"".join(rest.streaming_content)
    assert part + body == BIG and "X-Output-More" not in rest
    beyond = alice.get(f"/api/jobs/{chatty['id']}/stdout", {"offset": str(len(BIG) + 5)})
    assert beyond.status_code == 200 and beyond.content == b""


def test_an_output_file_answers_a_range(alice, job):
    finish(job["id"], {"outputs/data.bin": bytes(range(256)) * 4})
    response = alice.get(f"/api/jobs/{job['id']}/files/data.bin", HTTP_RANGE="bytes=250-259")
    assert response.status_code == 206 and b"".join(response.streaming_content) == bytes(range(250, 256)) + bytes(
        range(4)
    )
    assert response["Content-Disposition"] == 'attachment; filename="data.bin"'


def test_remote_logs_follow_reads_everything_past_the_4mb_chunks(live_server, users, chatty):
    # The remote CLI's `logs -f`: a first read, then reads from an offset until the state is final.
    from rest_framework.authtoken.models import Token

    remote = Client(live_server.url, Token.objects.get(user=users["alice"]).key)
    out = BytesIO()
    follow(lambda offset: remote.output(chatty["id"], "stdout", offset), out, keep_going=True, pause=0)
    assert out.getvalue() == BIG
    data, state = remote.output(chatty["id"], "stdout", 5)  # 4 MB, then the rest: both in one answer
    assert data == BIG[5:] and state == "succeeded"


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["job", "cancel", "hold", "release", "logs", "results"])
@pytest.mark.parametrize("job_id", ["9" * 5000, "9" * 20, "²"])
def test_a_huge_job_id_on_the_command_line_is_a_command_error(users, command, job_id, settings):
    settings.DCT_SERVER = ""
    with pytest.raises(CommandError) as info:
        call_command(command, job_id, user="alice", stdout=StringIO())
    assert "is not a job id; job ids are numbers, as './dct jobs' shows" in str(info.value)


def test_a_huge_limit_on_the_command_line_is_a_command_error(users, settings):
    settings.DCT_SERVER = ""
    with pytest.raises(CommandError, match="--limit must be from 1 to 1,000,000"):
        call_command("jobs", "--limit", "9" * 30, user="alice", stdout=StringIO())


def test_the_command_line_refuses_a_200mb_submission_file_without_reading_it(users, tmp_path, settings):
    settings.DCT_SERVER = ""
    big = tmp_path / "job.txt"
    with open(big, "wb") as f:
        f.write(b"executable = hello.py\n")
        f.truncate(200 * 1024 * 1024)  # sparse: 200 MB as far as anyone reading it can tell
    with pytest.raises(CommandError) as info:
        call_command("submit", str(big), user="alice", stdout=StringIO())
    assert str(info.value) == (
        f"{big}: the submission file is 209,715,200 bytes; the limit is 1,048,576 (1 MB); "
        "put long lists and big values in a data file the job reads"
    )
