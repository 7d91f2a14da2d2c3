"""History: jobs --all searchable by name and date, and purge removing old results' files but not rows."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.jobs.models import Job, JobState
from tests.api.conftest import HELLO, submit

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def ended(job_id: int, days_ago: float) -> Job:
    """End a job `days_ago` days back, with files in its folder as a node leaves them."""
    when = timezone.now() - timedelta(days=days_ago)
    Job.objects.filter(id=job_id).update(
        state=JobState.SUCCEEDED, exit_code=0, started_at=when, finished_at=when, run_seconds=3.0, cpu_seconds=2.5
    )
    job = Job.objects.get(id=job_id)
    (job.folder() / "outputs").mkdir(parents=True)
    (job.folder() / "stdout").write_text("out\n")
    (job.folder() / "outputs" / "r.txt").write_text("x" * 1000)
    return job


def test_purge_removes_old_jobs_files_and_keeps_their_rows(alice):
    old, young = (submit(alice, "executable = hello.py\n", {"hello.py": HELLO}).json()["jobs"][0] for _ in range(2))
    running = submit(alice, "executable = hello.py\n", {"hello.py": HELLO}).json()["jobs"][0]
    old_job, young_job = ended(old["id"], days_ago=40), ended(young["id"], days_ago=3)
    out = run("purge", "--older-than", "30d")
    assert out.startswith("removed the files of 1 job that ended before ")
    assert not old_job.folder().exists() and not old_job.submission.folder().exists()
    assert young_job.folder().exists() and young_job.submission.folder().exists()
    assert Job.objects.get(id=running["id"]).submission.folder().exists()
    kept = Job.objects.get(id=old["id"])
    assert kept.state == JobState.SUCCEEDED and kept.cpu_seconds == 2.5 and kept.run_seconds == 3.0
    assert alice.get(f"/api/jobs/{old['id']}/stdout").content == b""
    assert run("purge", "--older-than", "30d").startswith("removed the files of 0 jobs")


def test_purge_dry_run_removes_nothing(alice):
    job = submit(alice, "executable = hello.py\n", {"hello.py": HELLO}).json()["jobs"][0]
    folder = ended(job["id"], days_ago=40).folder()
    assert run("purge", "--older-than", "30d", "--dry-run").startswith("would remove the files of 1 job")
    assert folder.exists()


def test_purge_refuses_a_bad_age():
    with pytest.raises(CommandError, match="--older-than: 'soon' is not a duration; write it like 90s"):
        run("purge", "--older-than", "soon")


def test_jobs_all_finds_by_name_and_date(alice, users):
    a = submit(alice, "executable = hello.py\nname = fit-a\n", {"hello.py": HELLO}).json()["jobs"][0]
    b = submit(alice, "executable = hello.py\nname = plot\n", {"hello.py": HELLO}).json()["jobs"][0]
    ended(a["id"], days_ago=10)
    ended(b["id"], days_ago=1)

    def ids(*args: str) -> list[int]:
        return [j["id"] for j in json.loads(run("jobs", "--all", "--json", "--user", "alice", *args))["jobs"]]

    assert ids() == [a["id"], b["id"]]
    assert ids("--name", "FIT") == [a["id"]]
    # Dates are submission dates; both were submitted today.
    today = timezone.now().date()
    assert ids("--since", today.isoformat()) == [a["id"], b["id"]]
    assert ids("--until", (today - timedelta(days=1)).isoformat()) == []
    with pytest.raises(CommandError, match="since='last week' is not a date"):
        run("jobs", "--all", "--since", "last week", "--user", "alice")
