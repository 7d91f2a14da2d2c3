"""DCT_RETENTION (the scheduler purges old jobs' files by itself) and DCT_USER_QUOTA (no submission over it)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from dctoolkit.jobs.management.commands.scheduler import Command as Scheduler
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.operations import retention as retention_module
from dctoolkit.operations.retention import Retention
from dctoolkit.operations.storage import user_storage_bytes
from tests.api.conftest import HELLO, submit
from tests.api.test_history import ended

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def queued(client) -> dict:
    response = submit(client, "executable = hello.py\n", {"hello.py": HELLO})
    assert response.status_code == 201, response.content
    return response.json()["jobs"][0]


def test_one_round_purges_one_bounded_batch_oldest_first_and_keeps_the_records(alice, settings, monkeypatch):
    settings.DCT_RETENTION_SECONDS = 30 * 86400
    monkeypatch.setattr(retention_module, "BATCH", 2)
    jobs = [ended(queued(alice)["id"], days_ago=days) for days in (50, 40, 35, 3)]
    running = Job.objects.get(id=queued(alice)["id"])
    keeper = Retention()
    now = timezone.now()

    assert keeper.step(now) == 2, "a batch of two: the 50- and 40-day-old jobs"
    assert [j.folder().exists() for j in jobs] == [False, False, True, True]
    assert not jobs[0].submission.folder().exists(), "its only job is old: the inputs go too"
    assert keeper.resume_at is None, "a full batch: the next round goes on"
    assert keeper.step(now) == 1
    assert [j.folder().exists() for j in jobs] == [False, False, False, True]
    assert keeper.resume_at is not None, "caught up: it looks again a minute later, not every round"
    assert keeper.step(now + timedelta(seconds=1)) == 0
    assert running.submission.folder().exists() and jobs[3].submission.folder().exists()
    kept = Job.objects.get(id=jobs[0].id)
    assert (kept.state, kept.cpu_seconds, kept.run_seconds) == (JobState.SUCCEEDED, 2.5, 3.0)


def test_without_dct_retention_nothing_is_purged(alice, settings):
    settings.DCT_RETENTION_SECONDS = None
    job = ended(queued(alice)["id"], days_ago=400)
    assert Retention().step(timezone.now()) == 0
    assert job.folder().exists()


def test_the_scheduler_round_runs_the_retention_step(alice, settings, monkeypatch):
    settings.DCT_RETENTION_SECONDS = 86400
    monkeypatch.setattr(retention_module, "retention", Retention())
    monkeypatch.setattr("dctoolkit.jobs.scheduling.housekeeping.retention", retention_module.retention)
    # In-process, inside the test's transaction: the round's hygiene for a long-lived process (dropping
    # old connections) would close the test's own connection on PostgreSQL; integration tests run it for real.
    monkeypatch.setattr("dctoolkit.jobs.management.commands.scheduler.close_old_connections", lambda: None)
    job = ended(queued(alice)["id"], days_ago=2)
    Scheduler().round(chores=True)
    assert not job.folder().exists()
    assert Job.objects.filter(id=job.id).exists()


def test_a_user_over_the_quota_cannot_submit_and_nothing_is_queued(alice, bob, users, settings):
    settings.DCT_USER_QUOTA_MB = 1
    job = ended(queued(alice)["id"], days_ago=1)
    (job.folder() / "outputs" / "big.bin").write_bytes(b"\1" * (2 * 1024 * 1024))
    cache.clear()
    before = Job.objects.count()
    response = submit(alice, "executable = hello.py\n", {"hello.py": HELLO})
    assert response.status_code == 400
    text = response.content.decode()
    assert "job.txt: your files in shared storage take 2 MB, over your quota of 1 MB (DCT_USER_QUOTA)" in text, text
    assert "nothing was queued" in text and "Traceback" not in text
    assert Job.objects.count() == before
    assert submit(bob, "executable = hello.py\n", {"hello.py": HELLO}).status_code == 201, "bob is under it"


def test_storage_use_counts_a_users_job_and_submission_files_only(alice, bob, users):
    mine = ended(queued(alice)["id"], days_ago=1)
    queued(bob)
    used = user_storage_bytes(users["alice"].pk, fresh=True)
    assert used >= 1000 + len(HELLO)
    (mine.folder() / "outputs" / "more.bin").write_bytes(b"\1" * 100_000)
    assert user_storage_bytes(users["alice"].pk) == used, "cached for a few minutes"
    assert user_storage_bytes(users["alice"].pk, fresh=True) >= used + 100_000


def test_the_profile_and_usage_pages_show_storage_use(bob, users, settings, client):
    settings.DCT_USER_QUOTA_MB = 200 * 1024
    queued(bob)
    client.force_login(users["alice"])
    profile = client.get("/accounts/profile/").content.decode()
    assert "of shared storage" in profile and "quota of 200.0" in profile
    usage = client.get("/usage/").content.decode()
    assert 'data-testid="storage-table"' in usage and "alice" in usage
    assert "bob" not in usage.split('data-testid="storage-table"')[1].split("</table>")[0], "only staff see others"
    client.force_login(users["root"])
    staff_view = client.get("/usage/").content.decode().split('data-testid="storage-table"')[1].split("</table>")[0]
    assert "bob" in staff_view
