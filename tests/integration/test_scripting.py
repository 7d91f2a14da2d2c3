"""What scripts and workflow tools call, run as they run it: `dct submit --parsable` (and `--script`, `-a`)
from the caller's own folder, `dct status` until the job ends, `dct cancel`; on a real cluster."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import ROOT, wait_until

pytestmark = pytest.mark.integration

SLEEPER = "#!/bin/sh\nsleep 30\n"
HELLO = '#!/bin/sh\necho hello "$@"\n'


def dct(cluster, *args: str, cwd: Path, user: str = "alice") -> subprocess.CompletedProcess:
    """`./dct ARGS --user USER` from `cwd`, the bash script itself (it changes into its own folder)."""
    return subprocess.run(
        [str(ROOT / "dct"), *args, "--user", user], cwd=cwd, env=cluster.env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def words(cluster, *ids: int, style: str = "state", user: str = "alice", cwd: Path) -> list[str]:
    done = dct(cluster, "status", "--as", style, *map(str, ids), cwd=cwd, user=user)
    assert done.returncode == 0 and done.stderr == "", done
    return done.stdout.splitlines()


def test_submit_parsable_then_status_until_it_ends(cluster, tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "hello.sh").write_text(HELLO)
    (tmp_path / "work" / "hello.sh").chmod(0o755)
    # A relative path from the caller's folder, although ./dct runs in its own.
    done = dct(cluster, "submit", "--script", "work/hello.sh", "--parsable", "--cpus", "1", "--queue", "2",
               "--arguments", "$(Process)", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done
    ids = [int(line) for line in done.stdout.splitlines()]
    assert len(ids) == 2 and ids[1] == ids[0] + 1, done.stdout  # only the ids, one per line
    for job_id in ids:
        cluster.wait_job(job_id)
    assert words(cluster, *ids, cwd=tmp_path) == ["succeeded", "succeeded"]
    assert words(cluster, ids[0], style="snakemake", cwd=tmp_path) == ["success"]
    assert cluster.cli("logs", str(ids[1])).stdout == "hello 1\n"


def test_status_of_a_running_job_then_dct_cancel(cluster, tmp_path):
    (tmp_path / "nap.sh").write_text(SLEEPER)
    (tmp_path / "job.txt").write_text("executable = nap.sh\nrequest_cpus = 1\n")
    done = dct(cluster, "submit", "job.txt", "-a", "name=napper", "--parsable", cwd=tmp_path)
    assert done.returncode == 0, done
    job_id = int(done.stdout)
    wait_until(lambda: words(cluster, job_id, cwd=tmp_path) == ["running"], 60, "the job to run")
    assert words(cluster, job_id, style="snakemake", cwd=tmp_path) == ["running"]
    assert cluster.job(job_id)["name"] == "napper"
    # dct-cancel (pip's one-word command) is this function.
    cancel = subprocess.run(
        [sys.executable, "-c", "from dctoolkit.commandline import dct_cancel; dct_cancel()", str(job_id),
         "--user", "alice"],
        cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cancel.returncode == 0, cancel
    wait_until(lambda: words(cluster, job_id, cwd=tmp_path) == ["cancelled"], 30, "the job to be cancelled")
    assert words(cluster, job_id, style="snakemake", cwd=tmp_path) == ["failed"]


def test_a_failed_job_is_failed_for_snakemake(cluster, tmp_path):
    (tmp_path / "boom.sh").write_text("#!/bin/sh\nexit 3\n")
    done = dct(cluster, "submit", "--parsable", "--script", "boom.sh", cwd=tmp_path)
    assert done.returncode == 0, done
    job_id = int(done.stdout)
    cluster.wait_job(job_id)
    assert words(cluster, job_id, cwd=tmp_path) == ["failed"]
    assert words(cluster, job_id, style="snakemake", cwd=tmp_path) == ["failed"]


def test_another_users_job_and_an_unknown_id_are_errors_with_nothing_on_stdout(cluster, tmp_path):
    (tmp_path / "q.sh").write_text(SLEEPER)
    carols = int(dct(cluster, "submit", "--script", "q.sh", "--parsable", cwd=tmp_path, user="carol").stdout)
    mine = int(dct(cluster, "submit", "--script", "q.sh", "--parsable", cwd=tmp_path).stdout)
    done = dct(cluster, "status", str(mine), str(carols), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, ""), done
    assert done.stderr == f"CommandError: no job {carols} of yours; './dct jobs --all' lists your jobs\n"
    assert words(cluster, carols, user="carol", cwd=tmp_path) in (["queued"], ["dispatched"], ["running"])
    unknown = dct(cluster, "status", "999999", cwd=tmp_path)
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert "no job 999999 of yours" in unknown.stderr
    for job_id in (mine, carols):
        cluster.cli("cancel", str(job_id), user="carol" if job_id == carols else "alice")


def test_bad_options_are_refused_naming_the_option(cluster, tmp_path):
    (tmp_path / "q.sh").write_text(HELLO)
    done = dct(cluster, "submit", "--script", "q.sh", "--memory", "lots", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("CommandError: --memory lots: 'lots' is not a size"), done.stderr
    missing = dct(cluster, "submit", "--script", "nothere.sh", cwd=tmp_path)
    assert missing.stderr == "CommandError: nothere.sh: no such file; give the path of the program to run\n"
