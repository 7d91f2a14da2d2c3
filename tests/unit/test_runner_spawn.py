"""An unfenced job's first process dies with the node worker that started it, even by SIGKILL.

Real processes, no services: a child Python plays the worker, starts a job
with `runner._spawn` exactly as a node does, and is killed.  The job is
exec'd directly, no host helper (setpriv) in between that would run with the
job's environment.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dctoolkit.dev.stack import wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys, time
from pathlib import Path
from dctoolkit.nodes.worker import runner
spec = runner.RunSpec(job_id=1, workdir=Path("/tmp"), argv=["sleep", sys.argv[1]],
                      env={"PATH": "/usr/bin:/bin", "DCT_SPAWN_MARK": sys.argv[2]},
                      stdout_path=Path("/dev/null"), stderr_path=Path("/dev/null"))
with open("/dev/null", "wb") as out:
    proc = runner._spawn(spec.argv, spec, out, out)
print(proc.pid, flush=True)
time.sleep(120)
"""


def command_of(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def environment_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def test_an_unfenced_job_dies_with_its_worker_and_no_helper_sees_its_environment():
    seconds = f"{uuid.uuid4().int % 10**6 + 1000}.5"
    mark = uuid.uuid4().hex
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, seconds, mark], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        pid = int(worker.stdout.readline())
        # The job runs as itself under that pid, from its first exec: no helper ran before it.
        wait_until(lambda: command_of(pid)[:2] == [b"sleep", seconds.encode()], 10, "the job to start")
        with_mark = [int(p) for p in os.listdir("/proc") if p.isdigit() and mark.encode() in environment_of(int(p))]
        assert with_mark == [pid], "only the job itself has its variables"
        worker.kill()
        worker.wait()
        wait_until(lambda: not running(pid), 10, "the job to die with its worker")
    finally:
        worker.kill()
        worker.wait()


def test_an_unfenced_job_reads_its_input_file_on_stdin_and_a_link_is_never_followed(tmp_path):
    from dctoolkit.nodes.worker import runner

    (tmp_path / "in.txt").write_text("fed on stdin\n")
    (tmp_path / "link.txt").symlink_to("/etc/hostname")
    out_path = tmp_path / "stdout"

    def spec(stdin: str) -> runner.RunSpec:
        return runner.RunSpec(
            job_id=1,
            workdir=tmp_path,
            argv=["cat"],
            env={"PATH": "/usr/bin:/bin"},
            stdout_path=out_path,
            stderr_path=tmp_path / "stderr",
            stdin_path=tmp_path / stdin,
        )

    with open(out_path, "wb") as out:
        proc = runner._spawn(["cat"], spec("in.txt"), out, out)
        assert proc.wait(timeout=30) == 0
    assert out_path.read_text() == "fed on stdin\n"
    with pytest.raises(runner.StartError, match=r"not started: its input file link\.txt could not be opened"):
        runner.open_stdin(spec("link.txt").stdin_path)
