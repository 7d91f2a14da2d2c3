"""An unfenced job's first process dies with the node worker that started it, even by SIGKILL.

Real processes, no services: a child Python plays the worker, starts a job
with `runner._spawn` exactly as a node does, and is killed.
"""

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dctoolkit.stack import wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys, time
from pathlib import Path
from dctoolkit.jobs import runner
if sys.argv[2] == "preexec":
    runner._setpriv = lambda: None  # as on a machine without setpriv
spec = runner.RunSpec(job_id=1, workdir=Path("/tmp"), argv=["sleep", sys.argv[1]], env={"PATH": "/usr/bin:/bin"},
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


@pytest.mark.parametrize("way", ["setpriv", "preexec"])
def test_an_unfenced_job_dies_with_its_worker(way):
    if way == "setpriv" and subprocess.run(["sh", "-c", "setpriv --help | grep -q pdeathsig"]).returncode != 0:
        pytest.skip("SKIPPED: this machine's setpriv cannot set a parent-death signal")
    seconds = f"{uuid.uuid4().int % 10**6 + 1000}.5"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, seconds, way], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(worker.stdout.readline())
        # The job runs as itself under that pid (setpriv, when used, execs it).
        wait_until(lambda: command_of(pid)[:2] == [b"sleep", seconds.encode()], 10, "the job to start")
        worker.kill()
        worker.wait()
        wait_until(lambda: not running(pid), 10, "the job to die with its worker")
    finally:
        worker.kill()
        worker.wait()
