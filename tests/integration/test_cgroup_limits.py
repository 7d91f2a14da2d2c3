"""Limits that hold: every process a job makes is in the job's cgroup, so a double fork escapes nothing.

Real node workers, real bubblewrap, real cgroups (v1 here, as on the CI
machine; v2 where /sys/fs/cgroup is unified), jobs that try to get out:
a grandchild that double-forks away from the job and takes 1.5 GB under a
100 MB request, and a fork bomb.  Three nodes: warm sandboxes (the zygote
forks the job), fresh sandboxes (DCT_WARM_SANDBOXES=0) and no sandbox at all
(unfenced), each with DCT_JOB_MAX_PIDS=50.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

MAX_PIDS = 50
NODES = {
    "cg-warm": {},
    "cg-fresh": {"DCT_WARM_SANDBOXES": "0"},
    "cg-open": {"DCT_BWRAP": "/nonexistent/bwrap", "DCT_REQUIRE_SANDBOX": "0"},
}
MEMORY_REASON = "killed: used more memory than request_memory (100 MB); ask for more"

# The job's first process forks a child that starts a session of its own and
# exits, so the grandchild is reparented away from the job (to the sandbox's
# init, or the host's); the grandchild takes 1.5 GB and touches every page,
# while the job's first process only sleeps.
DOUBLE_FORK = """\
import os, sys, time
HOG = '''
b = bytearray(1536 << 20)
for i in range(0, len(b), 4096):
    b[i] = 1
print("held 1.5 GB", flush=True)
import time
time.sleep(120)
'''
if os.fork() == 0:
    os.setsid()
    if os.fork():
        os._exit(0)
    os.execv(sys.executable, [sys.executable, "-c", HOG, sys.argv[1]])
os.wait()
print("the grandchild is on its own", flush=True)
time.sleep(120)
"""

# Forks 200 children that each sleep, and says how many forks worked and how many failed.
FORKS = """\
import os, sys, time
made, refused = [], 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    made.append(pid)
print(len(made), refused, flush=True)
for pid in made:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


@pytest.fixture(scope="module")
def cg(tmp_path_factory):
    ghost = leave_a_dead_workers_cgroups()
    try:
        with Cluster(tmp_path_factory.mktemp("cluster")) as c:
            c.ghost = ghost
            for name, env in NODES.items():
                c.start_node(name, slots=1, env={"DCT_JOB_MAX_PIDS": str(MAX_PIDS), **env})
            yield c
    finally:
        for folder in ghost:  # where the sweep failed: not left on the machine
            for leftover in (folder / "job-1-1", folder):
                if leftover.exists():
                    leftover.rmdir()


def leave_a_dead_workers_cgroups() -> list[Path]:
    """What a node worker killed with a job running leaves: its folder and the job's, in every hierarchy."""
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has now
    folders = [own / f"dctoolkit-ghost-{gone.pid}" for own in cgroup_folders("self")]  # the nodes' cgroups are ours
    for folder in folders:
        (folder / "job-1-1").mkdir(parents=True)
    return folders


def marked(marker: str) -> list[int]:
    """Every process on the host whose command line holds `marker`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def job_process(marker: str) -> list[int]:
    """The job's own first process (`python job.py MARKER`), not a bubblewrap started with the same arguments."""
    return [pid for pid in marked(marker) if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:2] == [b"job.py"]]


def cgroup_of(pid: int | str) -> dict[str, str]:
    """controller -> cgroup path of a host process ("self": this one)."""
    found = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else ["unified"]:
            found[name] = path
    return found


def cgroup_folders(pid: int | str) -> list[Path]:
    """The cgroup folders a process is in, on v1 (memory, pids) or v2."""
    cgroups = cgroup_of(pid)
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return [Path("/sys/fs/cgroup" + cgroups["unified"])]
    return [Path(f"/sys/fs/cgroup/{c}{cgroups[c]}") for c in ("memory", "pids")]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def submit(c: Cluster, folder: Path, node: str, script: str, arguments: str = "", memory: str = "100MB") -> dict:
    text = f"executable = job.py\nrequest_memory = {memory}\nnode = {node}\n"
    if arguments:
        text += f"arguments = {arguments}\n"
    (job,) = c.submit(folder, text, {"job.py": script})
    return job


@pytest.mark.parametrize("node", NODES)
def test_a_double_forked_child_cannot_hold_more_memory_than_the_job_asked_for(cg, tmp_path, node):
    marker = f"dct-hog-{uuid.uuid4().hex[:12]}"
    job = submit(cg, tmp_path, node, DOUBLE_FORK, arguments=marker)
    cg.wait_job(job["id"], states=("running", "succeeded", "failed"), timeout=60)
    began = time.monotonic()
    done = cg.wait_job(job["id"], timeout=60)
    took = time.monotonic() - began
    out = cg.cli("logs", str(job["id"])).stdout
    assert done["state"] == "failed" and done["reason"] == MEMORY_REASON, (done, out)
    assert "held 1.5 GB" not in out, "the grandchild never got its 1.5 GB"
    assert took < 30, f"the job should end as soon as its grandchild is killed, not sleep out its 120 s ({took:.0f} s)"
    assert 0 < done["max_rss_mb"] <= 101, done  # the cgroup's peak: the limit held
    wait_until(lambda: not marked(marker), 10, "every process of the job to be gone from the host")


@pytest.mark.parametrize("node", NODES)
def test_a_fork_bomb_is_held_to_max_pids_and_the_node_runs_the_next_job(cg, tmp_path, node):
    job = submit(cg, tmp_path / "bomb", node, FORKS, memory="512MB")
    done = cg.wait_job(job["id"], timeout=90)
    out = cg.cli("logs", str(job["id"])).stdout
    assert done["state"] == "succeeded", (done, out, cg.cli("logs", str(job["id"]), "--stderr").stdout)
    made, refused = map(int, out.split())
    # The job's own first process is one of its 50: 49 forks work, the other 151 are refused.
    assert (made, refused) == (MAX_PIDS - 1, 200 - MAX_PIDS + 1), out
    after = submit(cg, tmp_path / "after", node, "print('still fine')\n")
    done = cg.wait_job(after["id"], timeout=60)
    assert done["state"] == "succeeded" and cg.cli("logs", str(after["id"])).stdout == "still fine\n", done
    assert cg.node(node)["state"] in ("available", "busy")


@pytest.mark.parametrize("node", NODES)
def test_the_job_runs_in_its_own_cgroup_which_is_gone_after_it(cg, tmp_path, node):
    marker = f"dct-in-{uuid.uuid4().hex[:12]}"
    job = submit(cg, tmp_path, node, "import sys, time\ntime.sleep(4)\n", arguments=marker)
    wait_until(lambda: job_process(marker), 60, "the job to start")
    (pid,) = job_process(marker)
    folders = cgroup_folders(pid)
    assert all(f.name == f"job-{job['id']}-1" and f.parent.name.startswith(f"dctoolkit-{node}-") for f in folders)
    assert all(f.is_dir() for f in folders), folders
    if node == "cg-warm":
        # The zygote that forked the job and the sandbox's init stay in the node's own cgroup.
        zygote = parent_of(pid)
        init = parent_of(zygote)
        assert b"-I\0-S\0-c\0" in Path(f"/proc/{zygote}/cmdline").read_bytes(), "the job's parent is the zygote"
        assert Path(f"/proc/{init}/cmdline").read_bytes().split(b"\0")[0].endswith(b"bwrap")
        for outside in (zygote, init):
            assert all("/job-" not in path for path in cgroup_of(outside).values()), cgroup_of(outside)
    done = cg.wait_job(job["id"], timeout=60)
    assert done["state"] == "succeeded", done
    wait_until(lambda: not any(f.exists() for f in folders), 10, "the job's cgroup to be removed")
    # The node said in its log how it limits jobs.
    assert "jobs are limited by cgroup v" in (cg.logs / f"{node}.log").read_text()


@pytest.mark.parametrize("node", NODES)
def test_a_real_fork_bomb_ends_with_its_job_and_leaves_nothing(cg, tmp_path, node):
    marker = f"dct-bomb-{uuid.uuid4().hex[:12]}"
    # Every process of the bomb is a fork of the job's shell, so each has the marker in its command line.
    bomb = "#!/bin/sh\nbomb() { bomb | bomb & }\nbomb\nsleep 3\necho the shell lived on\n"
    (job,) = cg.submit(tmp_path, f"executable = job.sh\narguments = {marker}\nnode = {node}\n", {"job.sh": bomb})
    done = cg.wait_job(job["id"], timeout=90)
    assert done["state"] in ("succeeded", "failed"), done
    wait_until(lambda: not marked(marker), 10, "every process of the fork bomb to be gone from the host")
    after = submit(cg, tmp_path / "after", node, "print('still fine')\n")
    assert cg.wait_job(after["id"], timeout=60)["state"] == "succeeded"


def test_what_a_dead_worker_left_is_swept_away_when_a_node_starts(cg):
    assert cg.ghost and not any(folder.exists() for folder in cg.ghost), cg.ghost
