"""A batch's page: its jobs counted per state, and one button to cancel, hold or release them all."""

import pytest
from django.utils import timezone

from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.scheduling import wake


@pytest.fixture(autouse=True)
def no_scheduler(settings, monkeypatch):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(wake, "_redis", None)


def batch(owner, count: int) -> Submission:
    sub = Submission.objects.create(owner=owner, source_name="fits.txt", text="", job_count=count)
    Job.objects.bulk_create(
        [Job(submission=sub, owner=owner, name=f"fit-{i}", process=i, executable="t.sh",
             submitted_at=timezone.now()) for i in range(count)]
    )  # fmt: skip
    return sub


def test_the_batch_page_counts_its_jobs_per_state_and_acts_on_all_of_them(client, owner):
    sub = batch(owner, 5)
    Job.objects.filter(submission=sub, process=0).update(state=JobState.SUCCEEDED)
    client.force_login(owner)
    page = client.get(f"/submissions/{sub.id}/")
    assert page.status_code == 200
    assert 'data-testid="batch-hold"' in page.text and 'data-testid="batch-release"' not in page.text
    held = client.post(f"/submissions/{sub.id}/hold/", follow=True)
    assert f"4 jobs of batch {sub.id} held." in held.text
    assert Job.objects.filter(submission=sub, state=JobState.HELD).count() == 4
    assert 'data-testid="batch-release"' in held.text
    cancelled = client.post(f"/submissions/{sub.id}/cancel/", follow=True)
    assert f"4 jobs of batch {sub.id} cancelled." in cancelled.text
    assert Job.objects.get(submission=sub, process=0).state == JobState.SUCCEEDED


def test_another_users_batch_is_404_and_untouched(client, owner, other):
    sub = batch(owner, 2)
    client.force_login(other)
    assert client.get(f"/submissions/{sub.id}/").status_code == 404
    assert client.post(f"/submissions/{sub.id}/cancel/").status_code == 404
    assert client.get(f"/submissions/{sub.id}/hold/").status_code in (404, 405)
    assert not Job.objects.exclude(state=JobState.QUEUED).exists()
