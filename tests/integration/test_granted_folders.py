"""Granted folders on real nodes: a user's job runs in (and writes to) the folder staff granted them; a
read-only grant cannot be written; another user's job cannot see it; an ungranted path is refused at
submit; and the fence alone (real bubblewrap) against a user who controls the granted folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dctoolkit.nodes.worker import sandbox, warm

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def folders(cluster, tmp_path_factory):
    """alice's read-write workflow folder and read-only dataset folder, granted by the staff user boss."""
    base = tmp_path_factory.mktemp("granted")
    rw, ro = base / "alice-wf", base / "alice-data"
    rw.mkdir()
    ro.mkdir()
    (ro / "in.txt").write_text("dataset line\n")
    cluster.cli("adduser", "boss", "--staff", input="staff-password-99\n")
    for user in ("alice", "bob"):
        cluster.cli("jobs", user=user)  # their accounts are made on first use
    cluster.cli("grant", "alice", str(rw), "--rw", user="boss")
    cluster.cli("grant", "alice", str(ro), user="boss")
    return rw, ro


def _run(cluster, folder: Path, text: str, files: dict[str, str], user: str = "alice") -> tuple[dict, str, str]:
    (job,) = cluster.submit(folder, text, files, user=user)
    done = cluster.wait_job(job["id"], user=user)
    out = cluster.cli("logs", str(job["id"]), user=user).stdout
    err = cluster.cli("logs", str(job["id"]), "--stderr", user=user).stdout
    return done, out, err


@pytest.mark.nodeside
def test_a_job_runs_in_its_owners_granted_folder_and_writes_there(cluster, folders, tmp_path):
    rw, ro = folders
    script = f"#!/bin/sh\npwd\necho made-by-job > result.txt\ncat {ro}/in.txt\n"
    done, out, err = _run(cluster, tmp_path, f"executable = w.sh\ninitialdir = {rw}\n", {"w.sh": script})
    assert done["state"] == "succeeded", (done, err)
    assert out == f"{os.path.realpath(rw)}\ndataset line\n", (out, err)
    assert (rw / "result.txt").read_text() == "made-by-job\n"


@pytest.mark.nodeside
def test_a_read_only_grant_cannot_be_written(cluster, folders, tmp_path):
    _, ro = folders
    script = "#!/bin/sh\ncat in.txt\necho no > new.txt || echo ro-refused\n"
    done, out, err = _run(cluster, tmp_path, f"executable = r.sh\ninitialdir = {ro}\n", {"r.sh": script})
    assert done["state"] == "succeeded", (done, err)
    assert out == "dataset line\nro-refused\n", (out, err)
    assert "Read-only file system" in err, err
    assert not (ro / "new.txt").exists()


@pytest.mark.nodeside
def test_submit_script_chdir_and_a_script_that_cds_there(cluster, folders, tmp_path):
    rw, _ = folders
    (tmp_path / "step.sh").write_text(f"#!/bin/sh\ncd {rw} && echo step > step.txt && pwd\n")
    (tmp_path / "step.sh").chmod(0o755)
    ids = cluster.cli("submit", "--script", "step.sh", "--chdir", str(rw), "--parsable", cwd=tmp_path).stdout.split()
    done = cluster.wait_job(int(ids[0]))
    assert done["state"] == "succeeded", done
    assert (rw / "step.txt").read_text() == "step\n"


@pytest.mark.nodeside
def test_a_slurm_script_with_chdir_runs_in_the_granted_folder_and_srun_still_works(cluster, folders, tmp_path):
    rw, _ = folders
    script = f"#!/bin/bash\n#SBATCH --chdir={rw}\npwd > where.txt\nsrun echo task > srun.txt\n"
    (tmp_path / "run.sh").write_text(script)
    ids = cluster.cli("submit", "run.sh", "--parsable", cwd=tmp_path).stdout.split()
    done = cluster.wait_job(int(ids[0]))
    assert done["state"] == "succeeded", done
    assert (rw / "where.txt").read_text() == f"{os.path.realpath(rw)}\n"
    assert (rw / "srun.txt").read_text() == "task\n"


@pytest.mark.nodeside
def test_another_users_job_cannot_see_the_folder(cluster, folders, tmp_path):
    rw, ro = folders
    script = f"#!/bin/sh\nls {rw} {ro} || echo unseen\necho x > {rw}/from-bob.txt || echo unwritable\n"
    done, out, err = _run(cluster, tmp_path, "executable = b.sh\n", {"b.sh": script}, user="bob")
    assert done["state"] == "succeeded", (done, err)
    assert out == "unseen\nunwritable\n", (out, err)
    assert "No such file or directory" in err, err
    assert not (rw / "from-bob.txt").exists()


def test_a_folder_nobody_granted_is_refused_at_submit_naming_it(cluster, folders, tmp_path):
    rw, _ = folders
    (tmp_path / "job.txt").write_text(f"executable = b.sh\n\ninitialdir = {rw}\n")
    (tmp_path / "b.sh").write_text("#!/bin/sh\ntrue\n")
    done = cluster.cli("submit", "job.txt", user="bob", cwd=tmp_path, check=False)
    assert done.returncode != 0
    assert f"job.txt:3: {rw} is not a folder granted to bob" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    done = cluster.cli("grant", "bob", str(rw), user="alice", check=False)
    assert "granting folders is for staff, and alice is not staff" in done.stderr, done.stderr


def test_a_revoked_grant_no_longer_applies_to_a_job_that_had_not_started(cluster, folders, tmp_path):
    rw, _ = folders
    late = rw / "late"
    late.mkdir()
    cluster.cli("grant", "alice", str(late), "--rw", user="boss")
    (job,) = cluster.submit(tmp_path, f"executable = l.sh\ninitialdir = {late}\nhold = true\n", {"l.sh": "#!/bin/sh\n"})
    cluster.cli("grant", "--revoke", "alice", str(late), user="boss")
    cluster.cli("release", str(job["id"]))
    done = cluster.wait_job(job["id"])
    # alice's grant of the folder around it still holds: take that back too, then the job starts nowhere.
    assert done["state"] == "succeeded", done
    (job,) = cluster.submit(tmp_path, f"executable = l.sh\ninitialdir = {late}\nhold = true\n", {"l.sh": "#!/bin/sh\n"})
    cluster.cli("grant", "--revoke", "alice", str(rw), user="boss")
    try:
        cluster.cli("release", str(job["id"]))
        done = cluster.wait_job(job["id"])
    finally:
        cluster.cli("grant", "alice", str(rw), "--rw", user="boss")
    assert done["state"] == "failed", done
    assert f"not started: {late} is not a folder granted to alice" in done["reason"], done


# --- the fence alone: real bubblewrap, no cluster -------------------------------------------------


def _fenced(argv: list[str], fence: sandbox.Fence, cwd: str = "") -> subprocess.CompletedProcess:
    with sandbox.launch(argv, fence, sandbox.HELPER_ENV, cwd) as cmd:
        return subprocess.run(
            cmd.argv, env=sandbox.HELPER_ENV, pass_fds=cmd.fds, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def lab(tmp_path):
    """alice's folder lab/wf (granted), and a folder beside it she was never granted."""
    wf, secret = tmp_path / "lab" / "wf", tmp_path / "secret"
    wf.mkdir(parents=True)
    secret.mkdir()
    (secret / "s.txt").write_text("not yours\n")
    job = tmp_path / "job"
    job.mkdir()
    return wf, secret, job


@pytest.mark.nodeside
def test_a_link_inside_a_granted_folder_does_not_widen_what_the_job_sees(lab):
    wf, secret, job = lab
    (wf / "escape").symlink_to(secret)
    fence = sandbox.Fence(workdir=str(job), granted=(sandbox.ExtraPath(str(wf), writable=True),))
    done = _fenced(["sh", "-c", f"cat {wf}/escape/s.txt || echo nothing; ls {secret} || echo unseen"], fence)
    assert done.stdout == "nothing\nunseen\n", (done.stdout, done.stderr)


@pytest.mark.nodeside
def test_a_granted_folder_swapped_for_a_link_is_not_bound(lab):
    wf, secret, job = lab
    wf.rmdir()
    wf.symlink_to(secret)  # the user owns lab/: after the grant, wf becomes a link to what they may not see
    fence = sandbox.Fence(workdir=str(job), granted=(sandbox.ExtraPath(str(wf)),))
    assert "a part of its path is now a symbolic link" in sandbox.granted_problem(str(wf))
    with pytest.raises(sandbox.LaunchError, match=f"the granted folder {wf} could not be opened"):
        _fenced(["cat", f"{wf}/s.txt"], fence)
    wf.unlink()
    (wf.parent.parent / "lab2").mkdir()
    (wf.parent.parent / "lab2" / "wf").mkdir()
    os.rename(wf.parent, wf.parent.parent / "lab-old")
    (wf.parent.parent / "lab").symlink_to(wf.parent.parent / "lab2")  # a link further up the path
    assert "symbolic link" in sandbox.granted_problem(str(wf))


@pytest.mark.nodeside
def test_a_hidden_folder_inside_a_granted_one_is_covered(lab):
    wf, _, job = lab
    (wf / "storage").mkdir()
    (wf / "storage" / "other.txt").write_text("another user's output\n")
    (wf / "mine.txt").write_text("mine\n")
    fence = sandbox.Fence(
        workdir=str(job), granted=(sandbox.ExtraPath(str(wf)),), hidden=(os.path.realpath(wf / "storage"),)
    )
    done = _fenced(["sh", "-c", "cat mine.txt; cat storage/other.txt || echo covered"], fence, cwd=str(wf))
    assert done.stdout == "mine\ncovered\n", (done.stdout, done.stderr)


@pytest.mark.nodeside
def test_a_warm_sandbox_never_serves_a_job_with_other_grants_or_another_owner(lab, tmp_path):
    wf, _, _ = lab
    pool = warm.WarmPool(tmp_path / "scratch", keep=4)
    made: list[warm.WarmSandbox] = []
    try:
        plain = sandbox.Fence(workdir="")
        granted = sandbox.Fence(workdir="", granted=(sandbox.ExtraPath(str(wf), writable=True),))
        first = pool.take(1, granted)
        pool.give_back(first)
        made = [pool.take(2, granted), pool.take(1, plain)]  # another user; the same one, the grant revoked
        assert all(box is not first for box in made)
        assert pool.take(1, granted) is first  # the same owner and grants: reused
        made.append(first)
    finally:
        for box in made:
            box.retire()
        pool.close()


@pytest.mark.nodeside
def test_a_job_cannot_leave_a_set_user_id_program_in_a_writable_grant(lab):
    wf, _, job = lab
    fence = sandbox.Fence(workdir=str(job), granted=(sandbox.ExtraPath(str(wf), writable=True),))
    made = "import os; os.close(os.open('made', os.O_CREAT | os.O_WRONLY, 0o4755))"
    script = (
        "cp /bin/true t; chmod u+s t || echo chmod-refused; chmod g+s t || echo setgid-refused; "
        f'chmod 755 t && echo plain-chmod; python3 -c "{made}" 2>/dev/null || echo create-refused'
    )
    done = _fenced(["sh", "-c", script], fence, cwd=str(wf))
    assert done.stdout == "chmod-refused\nsetgid-refused\nplain-chmod\ncreate-refused\n", (done.stdout, done.stderr)
    assert not (wf / "t").stat().st_mode & 0o6000
    assert not (wf / "made").exists()
