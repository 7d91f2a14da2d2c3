"""Acting on running jobs and pipelines, through real processes: the scheduler, node workers, the CLI."""

import itertools
import json
import signal
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engine]

SLEEPER = "#!/bin/sh\necho started\nsleep 120\n"


def test_a_running_job_cancelled_answers_cancelled_and_frees_its_slot_once_killed(tmp_path):
    # A node of its own, given time: stopped (SIGSTOP) longer than the usual 6 s it would be declared lost.
    with Cluster(tmp_path / "c", node_timeout=120) as cluster:
        cluster.start_node("node-1", slots=1)
        cancel_while_the_node_cannot_kill(cluster, tmp_path)


def cancel_while_the_node_cannot_kill(cluster: Cluster, tmp_path: Path) -> None:
    (job,) = cluster.submit(tmp_path / "a", "executable = s.sh\nnode = node-1\n", {"s.sh": SLEEPER})
    cluster.wait_job(job["id"], states=("running",))
    cluster.signal_node("node-1", signal.SIGSTOP)  # the node cannot kill it yet
    try:
        (answer,) = cluster.json("cancel", str(job["id"]), "--json")["jobs"]
        assert answer["state"] == "cancelled" and answer["id"] == job["id"]
        node = cluster.node("node-1")
        assert (node["running_jobs"], node["free_cpus"]) == (1, 0), "its process still runs: the slot is taken"
        (second,) = cluster.submit(tmp_path / "b", "executable = s.sh\nnode = node-1\n", {"s.sh": SLEEPER})
        assert cluster.job(second["id"])["state"] == "queued"
    finally:
        cluster.signal_node("node-1", signal.SIGCONT)
    cluster.wait_job(second["id"], states=("running",), timeout=30)  # the kill is done: the slot went to it
    ended = cluster.job(job["id"])
    assert ended["state"] == "cancelled", "the node's report of the killed run does not overwrite the cancel"
    assert ended["reason"] == "cancelled by its owner" and ended["run_seconds"] > 0
    assert cluster.cli("cancel", str(second["id"])).returncode == 0
    wait_until(lambda: cluster.node("node-1")["running_jobs"] == 0, 30, "node-1's slot to be freed")


def test_a_dependency_chain_runs_in_order_and_a_broken_one_is_cancelled_naming_its_parent(cluster, tmp_path):
    files = {"ok.sh": "#!/bin/sh\necho ok\n", "bad.sh": "#!/bin/sh\nexit 3\n"}
    (first,) = cluster.submit(tmp_path / "1", "executable = ok.sh\n", files)
    (second,) = cluster.submit(tmp_path / "2", f"executable = ok.sh\nafter_ok = {first['id']}\n", files)
    # The first may have ended already and the second be on its way: the order is judged below, from times.
    assert second["depends_on"] == [{"job": first["id"], "kind": "after_ok"}]
    # The same file again, with --after-ok: the option replaces the file's after_ok, as sbatch's options
    # replace its #SBATCH lines (and as every submit option replaces the key it names).
    third = cluster.cli("submit", "job.txt", "--after-ok", str(second["id"]), "--json", cwd=tmp_path / "2")
    (third,) = json.loads(third.stdout)["jobs"]
    (bad,) = cluster.submit(tmp_path / "3", "executable = bad.sh\n", files)
    (never,) = cluster.submit(tmp_path / "4", f"executable = ok.sh\nafter_ok = {bad['id']}\n", files)
    (rescue,) = cluster.submit(tmp_path / "5", f"executable = ok.sh\nafter_fail = {bad['id']}\n", files)

    ended = {j["id"]: cluster.wait_job(j["id"], timeout=90) for j in (first, second, third, never, rescue)}
    assert [ended[j["id"]]["state"] for j in (first, second, third)] == ["succeeded"] * 3
    assert ended[second["id"]]["started_at"] >= ended[first["id"]]["finished_at"]
    assert ended[third["id"]]["started_at"] >= ended[second["id"]]["finished_at"]
    assert ended[third["id"]]["depends_on"] == [{"job": second["id"], "kind": "after_ok"}]
    assert ended[never["id"]]["state"] == "cancelled" and ended[never["id"]]["started_at"] is None
    assert ended[never["id"]]["reason"].startswith(f"dependency never met: job {bad['id']} failed")
    assert ended[rescue["id"]]["state"] == "succeeded"


def test_a_waiting_job_says_what_it_waits_for_and_a_foreign_parent_is_refused(cluster, tmp_path):
    (parent,) = cluster.submit(tmp_path / "p", "executable = s.sh\n", {"s.sh": SLEEPER})
    (child,) = cluster.submit(tmp_path / "c", f"executable = s.sh\nafter_ok = {parent['id']}\n", {"s.sh": SLEEPER})
    cluster.wait_job(parent["id"], states=("running",))
    waiting = cluster.job(child["id"])
    assert waiting["state"] == "waiting"
    assert waiting["reason"].startswith(f"waiting for job {parent['id']}, running on node-")
    refused = cluster.cli("submit", "job.txt", user="bob", cwd=tmp_path / "c", check=False)  # alice's job
    assert refused.returncode == 1 and f"job.txt:2: after_ok: no job {parent['id']} of yours;" in refused.stderr
    assert cluster.json("cancel", "--submission", str(child["submission"]), "--json")["jobs"][0]["state"] == (
        "cancelled"
    )
    cluster.cli("cancel", str(parent["id"]))


def test_a_job_that_fails_once_is_retried_and_both_attempts_are_kept(cluster, tmp_path):
    flaky = '#!/bin/sh\nif [ "$DCT_ATTEMPT" = 1 ]; then echo first; exit 3; fi\necho again\n'
    (job,) = cluster.submit(tmp_path, "executable = f.sh\nmax_retries = 2\n", {"f.sh": flaky})
    done = cluster.wait_job(job["id"], timeout=90)
    assert (done["state"], done["exit_code"], done["attempts"], done["retries"]) == ("succeeded", 0, 2, 1)
    history = [(a["attempt"], a["state"], a["exit_code"]) for a in done["attempt_history"]]
    assert history == [(1, "failed", 3), (2, "succeeded", 0)]
    assert done["attempt_history"][0]["reason"] == "exit status 3; retry 1 of 2"
    assert cluster.cli("logs", str(job["id"])).stdout == "again\n"


def test_a_throttled_batch_runs_one_job_at_a_time_on_two_free_nodes(cluster, tmp_path):
    files = {"s.sh": "#!/bin/sh\nsleep 2\necho done $1\n"}
    jobs = cluster.submit(
        tmp_path / "t", "executable = s.sh\narguments = $(Process)\nmax_running = 1\nqueue 4\n", files
    )
    # submit reads its rows back after waking the scheduler, so one of them may already be on its way
    assert sum(j["state"] != "waiting" for j in jobs) <= 1, [j["state"] for j in jobs]
    assert {j["state"] for j in jobs} <= {"waiting", "queued", "dispatched", "running"}
    first = cluster.wait_job(jobs[0]["id"], states=("running",), timeout=60)
    assert first["state"] == "running"
    held_back = cluster.job(jobs[3]["id"])
    assert held_back["state"] == "waiting"
    # "1 job of batch S running" (or, in the instant between two jobs, "0 of batch S running; it is queued ...")
    assert held_back["reason"].startswith("max_running = 1: ")
    assert f" of batch {jobs[0]['submission']} running" in held_back["reason"]
    ended = [cluster.wait_job(j["id"], timeout=120) for j in jobs]
    assert [e["state"] for e in ended] == ["succeeded"] * 4
    runs = sorted((e["started_at"], e["finished_at"]) for e in ended)
    for (_, finished), (started, _) in itertools.pairwise(runs):
        assert started >= finished, f"two jobs of a max_running = 1 batch ran at once: {runs}"


def test_resubmit_failed_of_a_batch_runs_only_the_failed_ones_again(cluster, tmp_path):
    # Job 1 of the batch fails; run again from the stored submission, it is the only one to run again.
    script = '#!/bin/sh\nif [ "$1" = 1 ]; then echo "bad $1"; exit 3; fi\ncat in_$1.csv\n'
    files = {"fit.sh": script, **{f"in_{i}.csv": f"row {i}\n" for i in range(3)}}
    text = "executable = fit.sh\narguments = $(Process)\ndata = in_$(Process).csv\nqueue = 3\n"
    jobs = cluster.submit(tmp_path, text, files)
    ended = [cluster.wait_job(j["id"], timeout=90) for j in jobs]
    assert [j["state"] for j in ended] == ["succeeded", "failed", "succeeded"]
    sub = jobs[0]["submission"]
    (again,) = cluster.json("resubmit", "--submission", str(sub), "--failed")["jobs"]
    assert again["id"] > jobs[-1]["id"]
    rerun = cluster.wait_job(again["id"], timeout=90)
    assert (rerun["state"], rerun["exit_code"]) == ("failed", 3)
    assert cluster.cli("logs", str(again["id"])).stdout == "bad 1\n"
    (fine,) = cluster.json("resubmit", str(jobs[2]["id"]))["jobs"]
    assert cluster.wait_job(fine["id"], timeout=90)["state"] == "succeeded"
    assert cluster.cli("logs", str(fine["id"])).stdout == "row 2\n"
