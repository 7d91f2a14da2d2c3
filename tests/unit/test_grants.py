"""Granted folders: which paths may be granted, how they are canonicalised, and which grant holds a path."""

import os

import pytest

from dctoolkit.accounts.grants import (
    GrantedFolder,
    GrantPathError,
    canonical_folder,
    clean_path,
    granted_folder_for,
    not_granted_message,
)
from dctoolkit.jobs.intake.parse import SubmissionError, parse_submission


def test_a_folder_is_stored_resolved_through_its_links(tmp_path):
    real = tmp_path / "lab" / "alice"
    real.mkdir(parents=True)
    (tmp_path / "short").symlink_to(real)
    assert canonical_folder(f"{tmp_path}/short/") == os.path.realpath(real)
    assert canonical_folder(f"{tmp_path}//lab/./alice") == os.path.realpath(real)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data/alice", "data/alice: give an absolute path, such as /data/lab/alice"),
        ("/data/alice/../bob", "/data/alice/../bob: '..' is not allowed in the path; give the folder's own path"),
        ("/", "/ cannot be granted: it is every folder at once; grant the user's own folder"),
        ("/proc/self", "/proc/"),
        ("/dev", "/dev: folders under /dev cannot be granted"),
        ("/dev/shm", "/dev/shm: folders under /dev cannot be granted"),
        ("/etc/ssl", "/etc/ssl: folders under /etc cannot be granted"),
        ("/usr/local", "/usr/local: folders under /usr cannot be granted"),
        ("/tmp", "/tmp cannot be granted: it is each job's own, private one; grant a folder in it"),
    ],
)
def test_paths_that_cannot_be_granted_say_why(text, message):
    with pytest.raises(GrantPathError) as bad:
        canonical_folder(text)
    assert str(bad.value).startswith(message), str(bad.value)


def test_a_missing_folder_or_a_file_is_refused(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    for path in (tmp_path / "nope", tmp_path / "f.txt"):
        with pytest.raises(GrantPathError, match="no such folder on this machine; create it first"):
            canonical_folder(str(path))


def test_a_folder_inside_a_hidden_one_is_refused_even_through_a_link(tmp_path):
    storage = tmp_path / "storage"
    (storage / "users" / "bob").mkdir(parents=True)
    (tmp_path / "innocent").symlink_to(storage / "users")
    real_storage = os.path.realpath(storage)
    for text in (f"{storage}/users/bob", f"{tmp_path}/innocent/bob", str(storage)):
        with pytest.raises(GrantPathError) as bad:
            canonical_folder(text, hidden=[real_storage])
        assert f"lies inside {real_storage}, which no job may see" in str(bad.value)


def test_a_folder_holding_a_hidden_one_may_be_granted_the_sandbox_covers_it(tmp_path):
    (tmp_path / "storage").mkdir()
    assert canonical_folder(str(tmp_path), hidden=[str(tmp_path / "storage")]) == os.path.realpath(tmp_path)


def test_the_innermost_grant_holding_a_path_is_found_and_a_prefix_is_not_a_parent():
    grants = [GrantedFolder("/data/alice"), GrantedFolder("/data/alice/wf", writable=True)]
    assert granted_folder_for("/data/alice/wf/run1", grants) == GrantedFolder("/data/alice/wf", True)
    assert granted_folder_for("/data/alice", grants) == GrantedFolder("/data/alice")
    assert granted_folder_for("/data/alice2", grants) is None
    assert granted_folder_for("/data", grants) is None


def test_clean_path_refuses_a_nul_byte():
    with pytest.raises(GrantPathError, match="NUL byte"):
        clean_path("/data/\0x")


def test_the_refusal_names_the_path_the_user_and_the_command_for_staff():
    assert not_granted_message("/data/x", "alice") == (
        "/data/x is not a folder granted to alice; a job may run only in a folder staff granted "
        "(./dct grant alice FOLDER), or in its own folder (leave initialdir out)"
    )


def test_an_absolute_initialdir_is_the_folder_the_job_starts_in():
    (job,) = parse_submission("executable = a.sh\ninitialdir = /data/wf/\noutput = out.txt\n", "s.sub").jobs
    assert (job.chdir, job.initialdir, job.stdout) == ("/data/wf", "", "out.txt")
    (job,) = parse_submission("executable = a.sh\ninitialdir = run1\noutput = out.txt\n", "s.sub").jobs
    assert (job.chdir, job.initialdir, job.stdout) == ("", "run1", "run1/out.txt")


def test_an_initialdir_with_dot_dot_is_refused_on_its_line():
    with pytest.raises(SubmissionError) as bad:
        parse_submission("executable = a.sh\ninitialdir = /data/wf/../../etc\n", "s.sub")
    assert str(bad.value).startswith("s.sub:2: initialdir = /data/wf/../../etc: '..' is not allowed")
