"""HTCondor's `dir/` inputs (transfer_input_files naming a folder with a trailing slash): a link in the folder
never brings in a file from outside it, and the folder's files come again with `resubmit` and stay with `edit`."""

import os

import pytest
from django.utils import timezone

from dctoolkit.jobs.intake.again import AgainError, edit_jobs, resubmit_jobs
from dctoolkit.jobs.intake.dagqueue import prepare_dag, queue_dag
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.intake.queue import FolderFiles, prepare, queue, submit
from dctoolkit.jobs.models import Job, Submission
from dctoolkit.jobs.scheduling import dagman

pytestmark = pytest.mark.usefixtures("no_scheduler")

TEXT = "executable = run.sh\ntransfer_input_files = inputs/\nqueue\n"


@pytest.fixture
def home(tmp_path):
    """alice's submission folder: run.sh and inputs/ with two files; beside it, another user's secret."""
    folder = tmp_path / "alice"
    (folder / "inputs").mkdir(parents=True)
    (folder / "run.sh").write_text("#!/bin/sh\ncat a.txt b.txt\n")
    (folder / "run.sh").chmod(0o755)
    (folder / "inputs" / "a.txt").write_text("a\n")
    (folder / "inputs" / "b.txt").write_text("b\n")
    secret = tmp_path / "bob" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("bob's\n")
    return folder


def stored(job: Job) -> dict[str, str]:
    """The job's staged files by the name the job sees, and what each holds (kept as `N/name` on a clash)."""
    folder = Submission.objects.get(id=job.submission_id).folder()
    return {name.rsplit("/", 1)[-1]: (folder / name).read_text() for name in job.inputs}


def test_a_folder_input_stages_its_files(alice, home):
    (job,) = submit(TEXT, "job.sub", alice, FolderFiles(home))
    assert stored(job) == {"a.txt": "a\n", "b.txt": "b\n"}


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("passwd", "/etc/passwd"),  # a host file
        ("c.txt", "../../bob/secret.txt"),  # another user's file, by a relative link
        ("etc", "/etc"),  # a host folder
        ("up", ".."),  # the folder above, so its files would come in through it
    ],
)
def test_a_link_in_a_folder_input_that_leads_out_of_it_is_refused_and_nothing_is_queued(alice, home, name, target):
    os.symlink(target, home / "inputs" / name)
    with pytest.raises(SubmissionError) as info:
        submit(TEXT, "job.sub", alice, FolderFiles(home))
    assert str(info.value) == (
        f"job.sub:2: 'inputs/{name}' is a link to outside 'inputs/'; a folder's files are staged only when they are "
        "in it: copy the file into the folder, or name it on its own in transfer_input_files"
    )
    assert not Job.objects.exists()


def test_a_link_that_stays_in_the_folder_is_staged_as_the_file_it_names(alice, home):
    os.symlink("a.txt", home / "inputs" / "same.txt")
    (job,) = submit(TEXT, "job.sub", alice, FolderFiles(home))
    assert stored(job) == {"a.txt": "a\n", "b.txt": "b\n", "same.txt": "a\n"}
    assert not any((Submission.objects.get(id=job.submission_id).folder() / n).is_symlink() for n in job.inputs)


def test_a_link_swapped_in_after_the_check_is_not_followed_when_the_file_is_copied(alice, home, tmp_path):
    files = FolderFiles(home)
    ref_file = home / "inputs" / "b.txt"
    real_copy = files.copy_to

    def swap_then_copy(ref, dest):
        if ref.source == "inputs/b.txt":  # the attacker wins the race between the listing and the copy
            ref_file.unlink()
            ref_file.symlink_to(tmp_path / "bob" / "secret.txt")
        real_copy(ref, dest)

    files.copy_to = swap_then_copy  # type: ignore[method-assign]
    with pytest.raises(SubmissionError, match=r"^job\.sub:2: 'inputs/b\.txt' is a link to outside 'inputs/'"):
        submit(TEXT, "job.sub", alice, files)
    assert not Job.objects.exists()


def test_the_folder_swapped_for_a_link_after_it_was_listed_is_not_copied_from(alice, home, tmp_path):
    """The folder ABOVE the files, replaced by a link to another user's folder holding files of the same names
    between the listing (the check) and the copy: every check of a path would pass in bob's folder."""
    bobs = tmp_path / "bob" / "inputs"
    bobs.mkdir()
    for name in ("a.txt", "b.txt"):
        (bobs / name).write_text(f"bob's {name}\n")
    files = FolderFiles(home)
    real_copy = files.copy_to

    def swap_then_copy(ref, dest):
        if ref.within and not (home / "inputs").is_symlink():  # a real swap, once, on the disk
            (home / "inputs").rename(home / "inputs.listed")
            (home / "inputs").symlink_to(bobs)
        real_copy(ref, dest)

    files.copy_to = swap_then_copy  # type: ignore[method-assign]
    with pytest.raises(SubmissionError, match=r"^job\.sub:2: 'inputs/a\.txt' is a link to outside 'inputs/'"):
        submit(TEXT, "job.sub", alice, files)
    assert not Job.objects.exists()
    stored_anywhere = [p.read_text() for p in (tmp_path / "storage").rglob("*") if p.is_file()]
    assert not any(text.startswith("bob's") for text in stored_anywhere), stored_anywhere


def test_a_folder_named_through_a_link_of_the_users_own_is_staged_as_listed(alice, home):
    (home / "same").symlink_to(home / "inputs")
    (job,) = submit(TEXT.replace("inputs/", "same/"), "job.sub", alice, FolderFiles(home))
    assert stored(job) == {"a.txt": "a\n", "b.txt": "b\n"}


def test_links_inside_the_folder_absolute_or_chained_stage_the_file_they_name(alice, home):
    os.symlink(home / "inputs" / "a.txt", home / "inputs" / "abs.txt")
    os.symlink("abs.txt", home / "inputs" / "chain.txt")
    (job,) = submit(TEXT, "job.sub", alice, FolderFiles(home))
    assert stored(job) == {"a.txt": "a\n", "b.txt": "b\n", "abs.txt": "a\n", "chain.txt": "a\n"}


def test_a_fifo_swapped_in_after_the_listing_is_refused_not_waited_on(alice, home):
    files = FolderFiles(home)
    real_copy = files.copy_to

    def swap_then_copy(ref, dest):
        if ref.source == "inputs/b.txt":
            (home / "inputs" / "b.txt").unlink()
            os.mkfifo(home / "inputs" / "b.txt")
        real_copy(ref, dest)

    files.copy_to = swap_then_copy  # type: ignore[method-assign]
    with pytest.raises(SubmissionError, match=r"^job\.sub:2: 'inputs/b\.txt' is a link to outside 'inputs/'"):
        submit(TEXT, "job.sub", alice, files)


def test_resubmit_stages_the_folders_files_again(alice, home):
    (job,) = submit(TEXT, "job.sub", alice, FolderFiles(home))
    (again,) = resubmit_jobs([job], actor=alice)
    assert again.submission_id != job.submission_id
    assert (again.inputs, stored(again)) == (["a.txt", "b.txt"], {"a.txt": "a\n", "b.txt": "b\n"})


def test_resubmit_of_a_batch_whose_folders_share_file_names_keeps_each_jobs_own(alice, home):
    for run in ("r0", "r1"):
        (home / run).mkdir()
        (home / run / "in.txt").write_text(f"{run}\n")
    text = "executable = run.sh\ntransfer_input_files = r$(Process)/\nqueue 2\n"
    jobs = submit(text, "job.sub", alice, FolderFiles(home))
    again = resubmit_jobs(jobs, actor=alice)
    assert [stored(j) for j in sorted(again, key=lambda j: j.process)] == [{"in.txt": "r0\n"}, {"in.txt": "r1\n"}]


def test_an_edit_keeps_the_folders_files(alice, home):
    (job,) = submit("hold = true\n" + TEXT, "job.sub", alice, FolderFiles(home))
    edit_jobs([job], {"request_cpus": "1"}, actor=alice)
    job.refresh_from_db()
    assert (job.inputs, stored(job)) == (["a.txt", "b.txt"], {"a.txt": "a\n", "b.txt": "b\n"})


def test_a_dag_nodes_folder_input_is_staged_with_the_dag_and_its_job_gets_the_files(alice, home):
    (home / "one.sub").write_text(TEXT)
    prepared = prepare_dag("JOB one one.sub\n", "pipeline.dag", FolderFiles(home))
    _, (job,) = dagman.submit_dag(prepared, alice, timezone.now())
    assert (job.inputs, stored(job)) == (["a.txt", "b.txt"], {"a.txt": "a\n", "b.txt": "b\n"})


def test_a_dag_nodes_folder_input_with_a_link_out_is_refused_at_its_line(alice, home):
    (home / "one.sub").write_text(TEXT)
    os.symlink("/etc/passwd", home / "inputs" / "passwd")
    with pytest.raises(SubmissionError, match=r"^one\.sub:2: 'inputs/passwd' is a link to outside 'inputs/'"):
        prepare_dag("JOB one one.sub\n", "pipeline.dag", FolderFiles(home))


@pytest.fixture
def empty_inputs(alice, home):
    for name in ("a.txt", "b.txt"):
        (home / "inputs" / name).unlink()
    return home


def test_an_empty_folder_input_stages_nothing_and_a_resubmit_stages_nothing_again(alice, empty_inputs):
    (job,) = submit(TEXT, "job.sub", alice, FolderFiles(empty_inputs))
    assert job.inputs == []
    (again,) = resubmit_jobs([job], actor=alice)
    assert (again.inputs, again.submission_id != job.submission_id) == ([], True)


def test_a_dag_nodes_empty_folder_input_is_submitted_with_nothing_staged(alice, empty_inputs):
    (empty_inputs / "one.sub").write_text(TEXT)
    prepared = prepare_dag("JOB one one.sub\n", "pipeline.dag", FolderFiles(empty_inputs))
    dag, jobs = dagman.submit_dag(prepared, alice, timezone.now())
    assert [(j.inputs, j.executable) for j in jobs] == [([], "run.sh")], dag.nodes.get().reason


def _as_stored_before_empty_folders_were_kept(files: dict[str, str]) -> dict[str, str]:
    """A manifest as stored before the fix: a `dir/` entry only for a folder files came from."""
    return {k: v for k, v in files.items() if v or any(s.startswith(k) and s != k for s in files)}


def test_a_submission_stored_before_empty_folders_were_kept_is_resubmitted_with_its_folder_empty(alice, empty_inputs):
    (job,) = submit(TEXT, "job.sub", alice, FolderFiles(empty_inputs))
    sub = Submission.objects.get(id=job.submission_id)
    sub.files = _as_stored_before_empty_folders_were_kept(sub.files)
    assert sub.files == {"run.sh": "run.sh"}  # the old shape: nothing says `inputs/` was a folder
    sub.save(update_fields=["files"])
    (again,) = resubmit_jobs([Job.objects.get(id=job.id)], actor=alice)
    assert again.inputs == []
    assert Submission.objects.get(id=again.submission_id).files == {"run.sh": "run.sh", "inputs/": ""}


def test_an_old_manifests_folder_beside_kept_files_and_folders_is_read_as_empty_and_nothing_is_read_for_it(alice, home):
    # inputs/ kept (it had files); ../bob/ (empty then) unrecorded: it is listed as empty, and no file of bob's
    # folder, which now holds one, comes in.
    text = "executable = run.sh\ntransfer_input_files = inputs/, ../bob/\nqueue\n"
    (home.parent / "bob" / "secret.txt").unlink()
    (job,) = submit(text, "job.sub", alice, FolderFiles(home))
    (home.parent / "bob" / "secret.txt").write_text("bob's\n")
    sub = Submission.objects.get(id=job.submission_id)
    sub.files = _as_stored_before_empty_folders_were_kept(sub.files)
    assert "../bob/" not in sub.files and "inputs/" in sub.files
    sub.save(update_fields=["files"])
    (again,) = resubmit_jobs([Job.objects.get(id=job.id)], actor=alice)
    assert stored(again) == {"a.txt": "a\n", "b.txt": "b\n"}


def test_an_old_manifests_folder_whose_name_came_from_the_environment_is_refused_saying_what_to_do(alice, home):
    text = "executable = run.sh\ngetenv = true\ntransfer_input_files = $ENV(IN)/\nqueue\n"
    for name in ("a.txt", "b.txt"):
        (home / "inputs" / name).unlink()
    (job,) = queue(prepare(text, "job.sub", FolderFiles(home), {"IN": "inputs"}), alice)
    sub = Submission.objects.get(id=job.submission_id)
    sub.files = _as_stored_before_empty_folders_were_kept(sub.files)
    sub.save(update_fields=["files"])
    with pytest.raises(AgainError) as info:
        resubmit_jobs([Job.objects.get(id=job.id)], actor=alice)
    assert str(info.value) == (
        f"submission {sub.pk} cannot be queued again: job.sub:3: file 'inputs' not found; check the name and that "
        "it exists; a resubmit reads only the files stored with it: submit the file again"
    )


def test_a_dag_stored_before_empty_folders_were_kept_queues_its_node_with_the_folder_empty(alice, empty_inputs):
    (empty_inputs / "one.sub").write_text(TEXT)
    prepared = prepare_dag("JOB one one.sub\n", "pipeline.dag", FolderFiles(empty_inputs))
    dag = queue_dag(prepared, alice)
    dag.files = _as_stored_before_empty_folders_were_kept(dag.files)
    assert "inputs/" not in dag.files
    dag.save(update_fields=["files"])
    dagman.plan_steps(dag.id, timezone.now())
    assert [(j.inputs, j.executable) for j in Job.objects.filter(dag=dag)] == [([], "run.sh")], dag.nodes.get().reason
