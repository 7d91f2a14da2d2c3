"""The portal's Submit again, Run the failed ones again and Edit (rules in intake/again.py)."""

import pytest

from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling import wake


@pytest.fixture(autouse=True)
def no_scheduler(monkeypatch):
    monkeypatch.setattr(wake, "_redis", None)


@pytest.fixture
def batch_of(owner, tmp_path):
    def make(count: int) -> list[Job]:
        folder = tmp_path / "in"
        folder.mkdir(exist_ok=True)
        (folder / "run.sh").write_text("#!/bin/sh\necho $1\n")
        (folder / "run.sh").chmod(0o755)
        text = f"executable = run.sh\narguments = $(Process)\nqueue = {count}\n"
        return submit(text, "fits.txt", owner, FolderFiles(folder))

    return make


def test_submit_again_on_a_jobs_page_queues_a_new_job(client, owner, batch_of):
    (job,) = batch_of(1)
    Job.objects.filter(id=job.id).update(state=JobState.FAILED)
    client.force_login(owner)
    page = client.get(f"/jobs/{job.id}/")
    assert 'data-testid="job-resubmit"' in page.text
    again = client.post(f"/jobs/{job.id}/resubmit/", follow=True)
    new = Job.objects.exclude(id=job.id).get()
    assert f"Job {new.id} submitted." in again.text
    assert new.state == JobState.QUEUED and new.executable == "run.sh"


def test_run_the_failed_ones_again_on_a_batchs_page(client, owner, batch_of):
    jobs = batch_of(3)
    sub = jobs[0].submission_id
    client.force_login(owner)
    assert 'data-testid="batch-resubmit-failed"' not in client.get(f"/submissions/{sub}/").text
    Job.objects.filter(id=jobs[2].id).update(state=JobState.FAILED)
    assert "Run the failed ones again (1)" in client.get(f"/submissions/{sub}/").text
    client.post(f"/submissions/{sub}/resubmit-failed/", follow=True)
    (new,) = Job.objects.exclude(submission_id=sub)
    assert (new.process, new.arguments) == (2, ["2"])


def test_the_edit_form_shows_for_a_queued_job_and_changes_it(client, owner, batch_of):
    (job,) = batch_of(1)
    client.force_login(owner)
    page = client.get(f"/jobs/{job.id}/")
    assert 'data-testid="job-edit"' in page.text and 'value="256M"' in page.text
    done = client.post(
        f"/jobs/{job.id}/edit/", {"name": "bigger", "request_memory": "2G", "request_cpus": "1"}, follow=True
    )
    assert "changed: name, request_memory" in done.text
    job.refresh_from_db()
    assert (job.name, job.request_memory_mb) == ("bigger", 2048)
    bad = client.post(f"/jobs/{job.id}/edit/", {"request_cpus": "many"}, follow=True)
    assert "not changed" in bad.text and "request_cpus" in bad.text


def test_no_edit_form_for_a_running_job_and_an_edit_post_is_refused(client, owner, batch_of):
    (job,) = batch_of(1)
    Job.objects.filter(id=job.id).update(state=JobState.RUNNING)
    client.force_login(owner)
    assert 'data-testid="job-edit"' not in client.get(f"/jobs/{job.id}/").text
    done = client.post(f"/jobs/{job.id}/edit/", {"name": "x"}, follow=True)
    assert "only waiting, queued or held jobs can be edited" in done.text
    assert Job.objects.get(id=job.id).name != "x"


def test_another_users_job_and_batch_are_404_for_all_three(client, other, batch_of):
    (job,) = batch_of(1)
    client.force_login(other)
    assert client.post(f"/jobs/{job.id}/resubmit/").status_code == 404
    assert client.post(f"/jobs/{job.id}/edit/", {"name": "x"}).status_code == 404
    assert client.post(f"/submissions/{job.submission_id}/resubmit-failed/").status_code == 404
    assert Job.objects.count() == 1


def test_the_edit_form_offers_the_policy_expressions_and_changes_one_keeping_the_others(client, owner, batch_of):
    (job,) = batch_of(1)
    Job.objects.filter(id=job.id).update(policy={"periodic_remove": "JobStatus == 5"})
    client.force_login(owner)
    page = client.get(f"/jobs/{job.id}/").text
    for key in ("on_exit_hold", "on_exit_remove", "periodic_hold", "periodic_release", "periodic_remove"):
        assert f'name="{key}"' in page, key
    assert 'value="JobStatus == 5"' in page
    done = client.post(
        f"/jobs/{job.id}/edit/",
        {"periodic_release": "NumJobStarts < 3", "periodic_remove": "JobStatus == 5", "on_exit_hold": ""},
        follow=True,
    )
    assert "changed: periodic_release" in done.text
    job.refresh_from_db()
    assert job.policy == {"periodic_remove": "JobStatus == 5", "periodic_release": "NumJobStarts < 3"}
    assert job.periodic_policy is True


def test_a_bad_policy_expression_is_shown_at_its_field_with_the_value_posted_and_nothing_changes(
    client, owner, batch_of
):
    (job,) = batch_of(1)
    client.force_login(owner)
    page = client.post(f"/jobs/{job.id}/edit/", {"on_exit_hold": "ExitCode ==", "name": "renamed"})
    assert page.status_code == 200
    error = page.text.split('data-testid="edit-error-on_exit_hold">', 1)[1].split("</div>", 1)[0]
    assert error == "on_exit_hold = ExitCode ==: not a ClassAd expression; " + error.split("; ", 1)[1]
    assert 'value="ExitCode =="' in page.text and 'value="renamed"' in page.text  # as posted, to fix
    assert 'data-testid="edit-error-name"' not in page.text
    assert "fix the fields marked below" in page.text
    job.refresh_from_db()
    assert (job.policy, job.name) == ({}, "run")


def test_a_bad_value_of_another_field_is_shown_at_that_field_too(client, owner, batch_of):
    (job,) = batch_of(1)
    client.force_login(owner)
    page = client.post(f"/jobs/{job.id}/edit/", {"request_cpus": "many", "periodic_hold": "true"})
    assert 'data-testid="edit-error-request_cpus"' in page.text
    assert 'data-testid="edit-error-periodic_hold"' not in page.text
    assert Job.objects.get(id=job.id).policy == {}
