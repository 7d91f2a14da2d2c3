"""CPU limits that hold: a job is pinned to its `cpu_indices`, and its cpu cgroup holds it to request_cpus cores.

Real node workers, real bubblewrap, real cgroups.  A 1-cpu job runs two
busy processes for 3 s and measures its own CPU time over that wall time:
with the limit it is about 1 (one core), without it about 2 on a machine of
two cores.  Where the node has a cpu cgroup, the job first widens its own
affinity to every core (which nothing stops it doing): then only the
cgroup holds it.  Where the node has none (DCT_CGROUPS=off here), the
affinity set before the job's first instruction is what holds it.  Nodes:
warm sandboxes (the zygote pins the job), fresh sandboxes, no sandbox, and
no cgroups.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

NODES = {
    "pin-warm": {},
    "pin-fresh": {"DCT_WARM_SANDBOXES": "0"},
    "pin-open": {"DCT_BWRAP": "/nonexistent/bwrap", "DCT_REQUIRE_SANDBOX": "0"},
    "pin-nocg": {"DCT_CGROUPS": "off"},
}
# A job's CPU time over its wall time, at most: one core, and room for a busy machine's noise.
MOST = 1.3

# Prints the cores it may run on, widens them to every core when asked (only a cgroup holds it then),
# runs two busy processes for 3 s and prints its CPU time over that wall time.
BURN = """\
import os, resource, sys, time
status = open("/proc/self/status").read()
print(status.split("Cpus_allowed_list:")[1].split()[0], flush=True)
if sys.argv[1:] == ["widen"]:
    os.sched_setaffinity(0, range(os.cpu_count()))
wall = time.monotonic()
for _ in range(2):  # two processes, not threads: Python's threads share one core through the GIL
    if os.fork() == 0:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            pass
        os._exit(0)
for _ in range(2):
    os.wait()
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{(used.ru_utime + used.ru_stime) / (time.monotonic() - wall):.3f}", flush=True)
"""


def machine_has_cpu_cgroup() -> bool:
    """Whether a node running as this user here can give jobs a cpu cgroup (v1 cpu mounted, or v2's cpu)."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return "cpu" in (root / "cgroup.controllers").read_text().split() and os.access(root, os.W_OK)
    return (root / "cpu" / "cpu.cfs_quota_us").exists() and os.access(root / "cpu", os.W_OK)


@pytest.fixture(scope="module")
def pin(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster")) as c:
        for name, env in NODES.items():
            c.start_node(name, slots=2 if name == "pin-warm" else 1, env=env)
        yield c


def expected_enforcement(node: str) -> dict:
    if node == "pin-nocg":
        return {"cpus": "affinity", "memory": "watch", "pids": None}
    return {"cpus": "cgroup" if machine_has_cpu_cgroup() else "affinity", "memory": "cgroup", "pids": "cgroup"}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a machine of one core cannot tell one core from two")
@pytest.mark.parametrize("node", NODES)
def test_a_one_cpu_job_with_two_busy_processes_uses_one_core_pinned_to_its_cpu_indices(pin, tmp_path, node):
    enforcement = pin.node(node)["enforcement"]
    assert enforcement == expected_enforcement(node), enforcement
    widen = enforcement["cpus"] == "cgroup"
    text = f"executable = job.py\nrequest_cpus = 1\nnode = {node}\n" + ("arguments = widen\n" if widen else "")
    (job,) = pin.submit(tmp_path, text, {"job.py": BURN})
    done = pin.wait_job(job["id"], timeout=90)
    out = pin.cli("logs", str(job["id"])).stdout.split()
    assert done["state"] == "succeeded", (done, out, pin.cli("logs", str(job["id"]), "--stderr").stdout)
    allowed, ratio = out[0], float(out[1])
    assert len(done["cpu_indices"]) == 1 and allowed == str(done["cpu_indices"][0]), (done["cpu_indices"], allowed)
    assert done["cpu_indices"][0] in os.sched_getaffinity(0)
    assert ratio <= MOST, f"two busy processes of a 1-cpu job used {ratio:.2f} cores ({enforcement})"


def test_two_jobs_running_at_once_get_cores_of_their_own(pin, tmp_path):
    script = "import time\ntime.sleep(6)\n"
    jobs = [
        pin.submit(tmp_path / str(i), "executable = job.py\nnode = pin-warm\n", {"job.py": script})[0] for i in (1, 2)
    ]

    def running() -> list[dict] | None:
        rows = [pin.job(j["id"]) for j in jobs]
        return rows if all(r["state"] == "running" for r in rows) else None

    both = wait_until(running, 60, "both jobs to run at once")
    cores = [tuple(row["cpu_indices"]) for row in both]
    assert all(len(c) == 1 for c in cores) and cores[0] != cores[1], cores
    for job in jobs:
        assert pin.wait_job(job["id"], timeout=60)["state"] == "succeeded"
