"""./dct resubmit and ./dct edit on the real database: which jobs come again, what an edit may change."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.jobs.intake.again import AgainError, edit_jobs, parse_edits
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling.housekeeping import release_waiting
from dctoolkit.nodes.models import Node
from tests.db.conftest import online_node

pytestmark = pytest.mark.usefixtures("no_scheduler")


@pytest.fixture
def batch_of(alice, tmp_path):
    def make(count: int, extra: str = "", owner=None) -> list[Job]:
        folder = tmp_path / "in"
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "run.sh").write_text("#!/bin/sh\necho $1\n")
        (folder / "run.sh").chmod(0o755)
        for i in range(count):
            (folder / "data" / f"in_{i}.csv").write_text(f"{i}\n")
        text = f"executable = run.sh\narguments = $(Process)\ndata = data/in_$(Process).csv\n{extra}queue = {count}\n"
        return submit(text, "fits.txt", owner or alice, FolderFiles(folder))

    return make


def run_cli(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- resubmit ------------------------------------------------------------------------------------


def test_resubmit_of_one_job_of_a_batch_queues_that_process_only_with_its_own_file(batch_of):
    jobs = batch_of(5)
    out = run_cli("resubmit", str(jobs[3].id), "--user", "alice")
    new = Job.objects.exclude(submission_id=jobs[0].submission_id).get()
    assert out == f"1 job submitted: {new.id}\n"
    assert (new.process, new.arguments, new.inputs) == (3, ["3"], ["in_3.csv"])
    assert (new.submission.folder() / "in_3.csv").read_text() == "3\n"
    assert new.submission.text == jobs[0].submission.text


def test_resubmit_failed_of_a_submission_takes_only_the_failed_and_answers_like_submit(batch_of):
    jobs = batch_of(4)
    Job.objects.filter(id__in=[jobs[1].id, jobs[3].id]).update(state=JobState.FAILED)
    Job.objects.filter(id=jobs[0].id).update(state=JobState.CANCELLED)
    out = run_cli("resubmit", "--submission", str(jobs[0].submission_id), "--failed", "--json", "--user", "alice")
    rows = json.loads(out)["jobs"]
    made = Job.objects.filter(id__in=[r["id"] for r in rows]).order_by("process")
    assert [j.process for j in made] == [1, 3] and {r["state"] for r in rows} == {"queued"}
    out = run_cli("resubmit", "--submission", str(jobs[0].submission_id), "--parsable", "--user", "alice")
    assert len(out.split()) == 4


def test_resubmit_of_a_whole_batch_by_its_jobs_keeps_the_cluster_of_the_new_submission(batch_of):
    jobs = batch_of(2, extra="name = fit-$(Cluster)-$(Process)\n")
    run_cli("resubmit", str(jobs[0].id), str(jobs[1].id), "--user", "alice")
    new = list(Job.objects.exclude(submission_id=jobs[0].submission_id).order_by("process"))
    assert [j.name for j in new] == [f"fit-{new[0].submission_id}-0", f"fit-{new[0].submission_id}-1"]


def test_resubmit_refuses_a_purged_submission_another_users_job_and_nothing_failed(batch_of, bob):
    import shutil

    jobs = batch_of(2)
    with pytest.raises(CommandError, match="none of these jobs failed"):
        run_cli("resubmit", str(jobs[0].id), "--failed", "--user", "alice")
    with pytest.raises(CommandError, match=f"no job {jobs[0].id} of yours"):
        run_cli("resubmit", str(jobs[0].id), "--user", "bob")
    with pytest.raises(CommandError, match=f"no submission {jobs[0].submission_id} of yours"):
        run_cli("resubmit", "--submission", str(jobs[0].submission_id), "--user", "bob")
    shutil.rmtree(jobs[0].submission.folder())
    with pytest.raises(CommandError, match="files were purged"):
        run_cli("resubmit", str(jobs[0].id), "--user", "alice")
    with pytest.raises(CommandError, match="give job ids or --submission S"):
        run_cli("resubmit", "--user", "alice")
    assert Job.objects.count() == 2


# --- edit ----------------------------------------------------------------------------------------


def test_edit_changes_queued_and_held_jobs(batch_of):
    jobs = batch_of(2)
    Job.objects.filter(id=jobs[1].id).update(state=JobState.HELD)
    out = run_cli("edit", str(jobs[0].id), str(jobs[1].id), "request_memory=2G", "max_runtime=1h", "labels=ssd, big",
                  "node=node-1", "--user", "alice")  # fmt: skip
    assert out == f"job {jobs[0].id}: changed\njob {jobs[1].id}: changed\n"
    for job in Job.objects.filter(id__in=[jobs[0].id, jobs[1].id]):
        assert (job.request_memory_mb, job.max_runtime_seconds, job.pinned_node) == (2048, 3600, "node-1")
        assert job.placement["labels"] == ["big", "ssd"]


def test_edit_request_disk_keeps_it_with_the_machine_choice_and_checks_it_against_free_space(batch_of):
    (job,) = batch_of(1)
    Node.objects.create(name="node-1", slots=2, memory_total_mb=4096, disk_free_mb=8192)
    assert run_cli("edit", str(job.id), "request_disk=4GB", "--user", "alice") == f"job {job.id}: changed\n"
    job.refresh_from_db()
    assert job.placement["disk_mb"] == 4096
    with pytest.raises(CommandError, match="request_disk asks for 10240 MB but the node with the most has 8192 MB"):
        run_cli("edit", str(job.id), "request_disk=10GB", "--user", "alice")


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({"request_cpus": "0"}, "request_cpus"),
        ({"request_memory": "lots"}, "request_memory"),
        ({"max_retries": "-1"}, "max_retries"),
        ({"max_runtime": "soon"}, "not a duration"),
        ({"labels": "a b!"}, "labels"),
        ({"node": "bad name!"}, "node"),
        ({"executable": "x.sh"}, "not a key that can be edited"),
        ({"priority": "high"}, "priority: priority must be a whole number, got 'high'"),
        ({"start_after": "yesterday"}, "start_after"),
        ({"request_disk": "lots"}, "request_disk: 'lots' is not a disk size"),
    ],
)
def test_each_bad_value_is_refused_by_the_submission_builders(pairs, message):
    with pytest.raises(AgainError, match=message):
        parse_edits(pairs)


def test_a_start_time_given_by_edit_makes_a_queued_job_wait_for_it(batch_of):
    (job,) = batch_of(1)
    assert run_cli("edit", str(job.id), "start_after=+2h", "--user", "alice") == f"job {job.id}: changed\n"
    job.refresh_from_db()
    assert job.state == JobState.WAITING and job.start_after > timezone.now() + timedelta(minutes=119)
    assert release_waiting(timezone.now()) == 0, "not due yet"
    assert release_waiting(timezone.now() + timedelta(hours=3)) == 1
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


def test_a_good_value_is_read_as_a_submission_reads_it():
    assert parse_edits({"RequestMemory": "1 GB", "request_cpus": "2", "name": '"x"'}) == {
        "request_memory_mb": 1024,
        "request_cpus": 2,
        "name": "x",
    }


def test_edit_refuses_a_running_job_and_changes_the_others(batch_of):
    jobs = batch_of(2)
    Job.objects.filter(id=jobs[1].id).update(state=JobState.RUNNING)
    with pytest.raises(
        CommandError, match=f"job {jobs[1].id} is running: only waiting, queued or held jobs can be edited"
    ):
        run_cli("edit", str(jobs[0].id), str(jobs[1].id), "name=renamed", "--user", "alice")
    assert Job.objects.get(id=jobs[0].id).name == "renamed"
    assert Job.objects.get(id=jobs[1].id).name != "renamed"


def test_a_job_dispatched_after_it_was_read_is_not_changed(batch_of):
    (job,) = batch_of(1)  # read while queued ...
    Job.objects.filter(id=job.id).update(state=JobState.DISPATCHED)  # ... then the scheduler took it
    changed, failures = edit_jobs([job], {"request_cpus": "2"}, actor=job.owner)
    assert changed == [] and "is dispatched" in failures[job.id]
    assert Job.objects.get(id=job.id).request_cpus == 1


def test_an_impossible_size_is_refused_naming_what_exists_and_changes_nothing(batch_of):
    online_node()
    (job,) = batch_of(1)
    with pytest.raises(CommandError, match="request_cpus asks for 64 cpus but the largest node has 4 cpus"):
        run_cli("edit", str(job.id), "request_cpus=64", "--user", "alice")
    with pytest.raises(CommandError, match="unknown node 'node-9'; known nodes are: node-1"):
        run_cli("edit", str(job.id), "node=node-9", "--user", "alice")
    assert Job.objects.get(id=job.id).request_cpus == 1


def test_another_users_job_is_not_found_and_untouched(batch_of, bob):
    (job,) = batch_of(1)
    with pytest.raises(CommandError, match=f"no job {job.id} of yours"):
        run_cli("edit", str(job.id), "name=mine", "--user", "bob")
    assert Job.objects.get(id=job.id).name != "mine"


def test_what_getenv_copied_the_first_time_is_given_again(alice, tmp_path):
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / "run.sh").write_text("#!/bin/sh\nenv\n")
    (folder / "run.sh").chmod(0o755)
    text = "executable = run.sh\ngetenv = LAB_*\nenvironment = MODE=fast\n"
    from dctoolkit.jobs.intake.queue import prepare, queue

    (job,) = queue(prepare(text, "env.txt", FolderFiles(folder), {"LAB_DATA": "/data/x", "HOME": "/h"}), alice)
    assert job.environment == {"LAB_DATA": "/data/x", "MODE": "fast"}
    run_cli("resubmit", str(job.id), "--user", "alice")
    assert Job.objects.exclude(id=job.id).get().environment == job.environment


def test_edit_changes_a_policy_expression_keeping_the_others_and_marks_a_periodic_one(batch_of):
    (job,) = batch_of(1, "on_exit_hold = ExitCode != 0\n")
    assert job.periodic_policy is False
    out = run_cli("edit", str(job.id), "periodic_release=NumHolds < 3", "on_exit_hold_reason=\"exit code\"",
                  "--user", "alice")  # fmt: skip
    assert out == f"job {job.id}: changed\n"
    job.refresh_from_db()
    assert job.policy == {
        "on_exit_hold": "ExitCode != 0", "periodic_release": "NumHolds < 3", "on_exit_hold_reason": '"exit code"',
    }  # fmt: skip
    assert job.periodic_policy is True, "the housekeeping reads it now"


def test_edit_of_a_policy_expression_classad2_cannot_read_is_refused_at_its_key_and_changes_nothing(batch_of):
    (job,) = batch_of(1, "on_exit_hold = ExitCode != 0\n")
    with pytest.raises(CommandError, match=r"^periodic_release: periodic_release = \(\(: not a ClassAd expression; "):
        run_cli("edit", str(job.id), "periodic_release=((", "name=renamed", "--user", "alice")
    after = Job.objects.get(id=job.id)
    assert (after.policy, after.periodic_policy, after.name) == ({"on_exit_hold": "ExitCode != 0"}, False, job.name)
