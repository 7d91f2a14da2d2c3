"""Desktop nodes with a real node worker: DCT_NODE_POLICY=desktop and an idle file standing in for the owner.

One cluster, two desktops (DCT_IDLE_MINUTES=0.05: the owner counts as away after 3 s idle): `desk-long`
keeps a suspended job as long as it takes, `desk-short` (DCT_SUSPEND_MAX=2s) vacates it.  The owner is
"present" while their idle file says 0 and "away" while it says 3600.  Whether a job's processes are
stopped is read from /proc, where the kernel says so.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.cluster import PYTHON, ROOT, Cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

HEARTBEAT = 1
SUSPEND_ABOUT = 1.0 + 2 * HEARTBEAT  # a heartbeat to see the owner, the job's watcher's half second, and slack

# 15 steps of 0.2 s: 3 s of running, however long it is stopped in between.
STEPS = "#!/bin/sh\ni=0\nwhile [ $i -lt 15 ]; do sleep 0.2; i=$((i+1)); done\necho done $1\n"
# Runs until stopped; says so when it is asked to leave (SIGTERM) before it is killed.
FOREVER = "#!/bin/sh\ntrap 'echo got TERM; exit 143' TERM\nwhile :; do sleep 0.2; done\n"


@pytest.fixture(scope="module")
def desks(tmp_path_factory):
    root = tmp_path_factory.mktemp("desktop")
    idle = {"desk-long": root / "idle-long", "desk-short": root / "idle-short"}
    for path in idle.values():
        path.write_text("0\n")  # the owners are at their desks
    with Cluster(root / "cluster", heartbeat=HEARTBEAT) as c:
        for name, suspend_max in (("desk-long", "10m"), ("desk-short", "2s")):
            env = {"DCT_NODE_POLICY": "desktop", "DCT_IDLE_MINUTES": "0.05", "DCT_IDLE_SOURCE": str(idle[name]),
                   "DCT_SUSPEND_MAX": suspend_max, "DCT_NODE_OWNER": "alice"}  # fmt: skip
            c.start_node(name, slots=1, env=env)
        yield c, idle


def owner(idle: Path, present: bool) -> None:
    idle.write_text("0\n" if present else "3600\n")


def job_processes(token: str) -> list[int]:
    """The pids of the job's processes: the one whose command line holds `token`, and its descendants."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    todo = list(found)
    while todo:
        pid = todo.pop()
        try:
            kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            continue
        found += kids
        todo += kids
    return found


def states(pids: list[int]) -> set[str]:
    """Each process's state letter from /proc/PID/stat (T: stopped)."""
    letters = set()
    for pid in pids:
        try:
            letters.add(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue
    return letters


def i_need_it_now(c: Cluster, name: str) -> None:
    """The owner's button (the portal's POST calls the same lending.reclaim), through `manage.py shell`."""
    code = (
        "from dctoolkit.nodes import lending; from dctoolkit.nodes.models import Node; "
        f"assert lending.reclaim(Node.objects.get(name={name!r}), actor='alice')"
    )
    done = subprocess.run([PYTHON, str(ROOT / "manage.py"), "shell", "-c", code], cwd=c.workdir, env=c.env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


def heartbeats_later(c: Cluster, name: str, beats: int) -> None:
    """Wait until node `name` has sent `beats` more heartbeats (read from the database)."""
    first = c.node(name)["last_heartbeat"]
    seen = {first}

    def beaten() -> bool:
        seen.add(c.node(name)["last_heartbeat"])
        return len(seen) > beats

    wait_until(beaten, 10 * beats + 10, f"{beats} heartbeats of {name}", interval=0.2)


def test_a_desktop_lends_only_while_its_owner_is_away_and_suspends_on_their_return(desks, tmp_path):
    c, idle = desks
    token = uuid.uuid4().hex
    text = f"executable = steps.sh\narguments = {token}\nnode = desk-long\nmax_runtime = 6s\n"
    (job,) = c.submit(tmp_path, text, {"steps.sh": STEPS})

    # The owner is present: no job, and the reason says why.
    node = wait_until(lambda: (n := c.node("desk-long")) and n["owner_present"] and n, 20, "the owner to be seen")
    assert (node["policy"], node["owner"]) == ("desktop", "alice")
    heartbeats_later(c, "desk-long", 2)
    waiting = c.job(job["id"])
    assert waiting["state"] == "queued"
    assert waiting["reason"].startswith("pinned to desk-long, a desktop whose owner is using it"), waiting["reason"]

    owner(idle["desk-long"], present=False)
    c.wait_job(job["id"], states=("running",), timeout=20)
    assert c.node("desk-long")["owner_present"] is False

    owner(idle["desk-long"], present=True)
    back = time.monotonic()
    suspended = c.wait_job(job["id"], states=("suspended", "succeeded", "failed"), timeout=15)
    assert suspended["state"] == "suspended"
    assert suspended["reason"] == "suspended: desk-long's owner is back; it resumes when they leave again"
    assert time.monotonic() - back <= SUSPEND_ABOUT + 2, "not suspended within a heartbeat of the owner's return"
    pids = job_processes(token)
    assert pids, "the job's processes were not found"
    wait_until(lambda: states(job_processes(token)) == {"T"}, 5, "every process of the job to be stopped")

    time.sleep(5)  # stopped longer than max_runtime has left: it is not counted, and nothing is killed
    still = c.job(job["id"])
    assert still["state"] == "suspended" and states(job_processes(token)) == {"T"}
    assert still["suspended_seconds"] >= 5

    owner(idle["desk-long"], present=False)
    c.wait_job(job["id"], states=("running", "succeeded"), timeout=15)
    done = c.wait_job(job["id"], timeout=30)
    assert (done["state"], done["attempts"], done["reason"]) == ("succeeded", 1, "")
    wall = (datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["started_at"])).total_seconds()
    assert done["suspended_seconds"] >= 5
    assert wall > 6 + 2  # longer than max_runtime: the time suspended did not count against it
    assert done["run_seconds"] <= wall - 5  # nor is it charged
    owner(idle["desk-long"], present=True)


def test_a_desktop_vacates_after_suspend_max_and_on_i_need_it_now(desks, tmp_path):
    c, idle = desks
    owner(idle["desk-short"], present=False)
    token = uuid.uuid4().hex
    text = f"executable = forever.sh\narguments = {token}\nnode = desk-short\n"
    (job,) = c.submit(tmp_path, text, {"forever.sh": FOREVER})
    assert c.wait_job(job["id"], states=("running",), timeout=20)["attempts"] == 1

    # The owner comes back and stays: suspended, then after DCT_SUSPEND_MAX (2 s) vacated.
    owner(idle["desk-short"], present=True)
    c.wait_job(job["id"], states=("suspended",), timeout=15)
    vacated = c.wait_job(job["id"], states=("queued",), timeout=20)
    assert vacated["attempts"] == 0  # the attempt was not used up
    assert vacated["reason"].startswith("requeued (desk-short's owner came back)"), vacated["reason"]
    assert [(a["state"], a["node"], a["reason"]) for a in vacated["attempt_history"]] == [
        ("vacated", "desk-short", "desk-short's owner came back")
    ]
    assert "got TERM" in c.cli("logs", str(job["id"])).stdout  # asked to leave before it was killed
    assert not job_processes(token)

    # The owner leaves: it runs again, as attempt 1; then "I need it now" vacates it at once.
    owner(idle["desk-short"], present=False)
    assert c.wait_job(job["id"], states=("running",), timeout=20)["attempts"] == 1
    i_need_it_now(c, "desk-short")
    again = c.wait_job(job["id"], states=("queued",), timeout=15)
    assert again["attempts"] == 0
    assert [a["state"] for a in again["attempt_history"]] == ["vacated", "vacated"]
    assert c.node("desk-short")["owner_present"] is True

    # Idle since the press for DCT_IDLE_MINUTES: it lends again.  Cancelled there, the job ends.
    assert c.wait_job(job["id"], states=("running",), timeout=20)["attempts"] == 1
    c.cli("cancel", str(job["id"]))
    assert c.wait_job(job["id"], timeout=20)["state"] == "cancelled"
