"""An HTCondor file through the real queueing code and database: $(Cluster) is the submission's id, the
stream names are kept in its rows and the event log beside it, `hold = true` submits held, an owner's actions
are logged, +Attr is in the job object, and `notification = Error` mails only what did not succeed."""

import htcondor2
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dctoolkit.jobs import eventlog, notify, streams, transitions
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.web.serializers import job_dict

SUBMIT = """\
executable = run.sh
arguments  = "$(x) $(Cluster)"
output     = out.$(Cluster).$(Process)
log        = run.log
hold       = true
queue x in (a b)
"""


@pytest.fixture
def storage(settings, tmp_path):
    settings.DCT_STORAGE = tmp_path / "storage"
    return settings.DCT_STORAGE


def test_an_htcondor_file_is_queued_with_its_cluster_stream_names_and_event_log(db, storage, tmp_path):
    owner = get_user_model().objects.create_user("alice")
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho $@\n")
    jobs = submit(SUBMIT, "run.sub", owner, FolderFiles(tmp_path))
    cluster = jobs[0].submission_id
    assert [(j.arguments, j.state) for j in jobs] == [(["a", str(cluster)], "held"), (["b", str(cluster)], "held")]
    folder = jobs[0].submission.folder()
    assert streams.of(jobs[1]) == streams.Streams(stdout=f"out.{cluster}.1", log="run.log")
    assert transitions.release(jobs[0]) and transitions.cancel(jobs[1])
    assert jobs[0].__class__.objects.get(id=jobs[1].id).state == JobState.CANCELLED
    events = list(htcondor2.JobEventLog(str(folder / eventlog.FILE_NAME)).events(stop_after=0))
    assert [(e.cluster, e.proc, int(e.type)) for e in events] == [
        (cluster, 0, 0),
        (cluster, 1, 0),
        (cluster, 0, 13),
        (cluster, 1, 9),
    ]


def test_queue_0_submits_nothing_and_says_so(db, storage, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "none.sub").write_text("executable = run.sh\nqueue 0\n")
    out = StringIO()
    call_command("submit", str(tmp_path / "none.sub"), stdout=out)
    assert out.getvalue() == "0 jobs submitted: none\n"


def test_plus_and_my_attributes_are_kept_as_written_and_shown_in_the_job_object(db, storage, tmp_path):
    owner = get_user_model().objects.create_user("alice")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    text = 'executable = run.sh\n+ProjectName = "bio-7"\nMY.WantGlidein = true\n+Tag = "run_$(Process)"\nqueue 2\n'
    jobs = submit(text, "run.sub", owner, FolderFiles(tmp_path))
    shown = [job_dict(Job.objects.get(id=j.id), timezone.now())["attributes"] for j in jobs]
    assert shown == [{"ProjectName": '"bio-7"', "WantGlidein": "true", "Tag": f'"run_{p}"'} for p in (0, 1)]
    assert job_dict(jobs[0], timezone.now())["start_after"] is None


def _end(job: Job, state: JobState) -> None:
    Job.objects.filter(id=job.id).update(state=state, finished_at=timezone.now())


def test_notification_error_mails_a_failed_job_or_batch_and_never_a_successful_one(db, storage, tmp_path):
    owner = get_user_model().objects.create_user("alice")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")

    def queued(extra: str) -> list[Job]:
        text = f"executable = run.sh\nnotify_user = a@lab.org\nnotification = Error\n{extra}"
        return submit(text, "run.sub", owner, FolderFiles(tmp_path))

    (ok,) = queued("queue\n")
    (bad,) = queued("queue\n")
    fine_batch, bad_batch = queued("queue 2\n"), queued("queue 2\n")
    (always,) = submit("executable = run.sh\nnotify_user = a@lab.org\nnotification = Complete\n", "run.sub", owner,
                       FolderFiles(tmp_path))  # fmt: skip
    for job in (ok, *fine_batch, bad_batch[0], always):
        _end(job, JobState.SUCCEEDED)
    _end(bad, JobState.FAILED)
    _end(bad_batch[1], JobState.CANCELLED)
    assert [j.id for j in notify.due_jobs()] == [bad.id, always.id]
    assert [s.id for s in notify.due_batches()] == [bad_batch[0].submission_id]


def test_transfer_input_files_dir_slash_stores_and_stages_the_folders_files(db, storage, tmp_path):
    # OSG's AutoDock Vina tutorial: transfer_input_files = data/, vina (HTCondor: data/'s files, not data).
    from dctoolkit.nodes.worker.workfiles import stage_inputs

    owner = get_user_model().objects.create_user("alice")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "vina").write_text("v")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "receptor.pdbqt").write_text("r")
    (tmp_path / "data" / "ligand.pdbqt").write_text("l")
    (job,) = submit(
        "executable = run.sh\ntransfer_input_files = data/, vina\nqueue\n", "v.sub", owner, FolderFiles(tmp_path)
    )
    assert job.inputs == ["ligand.pdbqt", "receptor.pdbqt", "vina"]
    workdir = tmp_path / "work"
    stage_inputs(job.submission.folder(), job.inputs, workdir, job.executable)
    assert sorted(p.name for p in workdir.iterdir()) == ["ligand.pdbqt", "receptor.pdbqt", "run.sh", "vina"]
    assert (workdir / "ligand.pdbqt").read_text() == "l"
    from dctoolkit.jobs.intake.parse import SubmissionError

    with pytest.raises(SubmissionError, match="'data' is a folder; HTCondor would copy it whole"):
        submit("executable = run.sh\ntransfer_input_files = data\nqueue\n", "v.sub", owner, FolderFiles(tmp_path))
