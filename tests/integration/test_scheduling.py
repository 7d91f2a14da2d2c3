"""Fair share, limits and control, with real node workers."""

import signal
from datetime import datetime

import pytest

from tests.support.cluster import DONE_SECONDS, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engine]


def started(job):
    return datetime.fromisoformat(job["started_at"])


def test_a_newcomer_waits_for_at_most_one_of_a_heavy_users_jobs(fresh_cluster, tmp_path, gate):
    c = fresh_cluster
    c.start_node("node-1", slots=1)
    # alice's first job holds the node until bob has submitted: under load his CLI alone took about as
    # long as her eight 1 s jobs, so that none of hers might be left to wait behind.
    one = f'#!/bin/sh\n[ "$DCT_PROCESS" != 0 ] || {gate.command}\nsleep 1\n'
    alice = c.submit(tmp_path / "a", "executable = one.sh\nqueue = 8\n", {"one.sh": one})
    c.wait_job(alice[0]["id"], states=("running",))
    (bob,) = c.submit(tmp_path / "b", "executable = one.sh\n", {"one.sh": "#!/bin/sh\nsleep 1\n"}, user="bob")
    gate.open()
    bob_done = c.wait_job(bob["id"], user="bob", timeout=DONE_SECONDS)
    alice_jobs = [c.wait_job(j["id"], timeout=DONE_SECONDS) for j in alice]
    # From the moment bob submits, alice's running job may finish and at most
    # one more of hers may start (a pass already under way) before bob's.
    submitted = datetime.fromisoformat(bob_done["submitted_at"])
    overtook = [j["id"] for j in alice_jobs if submitted <= started(j) < started(bob_done)]
    assert len(overtook) <= 1, f"alice's jobs {overtook} started after bob submitted and before his"
    assert any(started(j) > started(bob_done) for j in alice_jobs), "bob did not wait behind all eight"
    usage = {u["user"]: u for u in c.json("usage")["users"]}
    assert usage["alice"]["usage"] > usage["bob"]["usage"] > 0


def test_two_users_with_equal_usage_alternate(fresh_cluster, tmp_path):
    c = fresh_cluster
    c.start_node("node-1", slots=1)
    # Hold the node with a blocker so that both users' jobs are queued before any starts.
    (blocker,) = c.submit(tmp_path / "x", "executable = b.sh\n", {"b.sh": "#!/bin/sh\nsleep 60\n"}, user="zed")
    c.wait_job(blocker["id"], states=("running",), user="zed")
    a = c.submit(tmp_path / "a", "executable = q.sh\nqueue = 3\n", {"q.sh": "#!/bin/sh\nsleep 0.3\n"}, user="ann")
    b = c.submit(tmp_path / "b", "executable = q.sh\nqueue = 3\n", {"q.sh": "#!/bin/sh\nsleep 0.3\n"}, user="ben")
    c.cli("cancel", str(blocker["id"]), user="zed")
    done = [c.wait_job(j["id"], user=u) for u, js in (("ann", a), ("ben", b)) for j in js]
    order = [j["owner"] for j in sorted(done, key=started)]
    # Usage decides, and run times jitter: neither user may get ahead by more than one job.
    for n in range(1, len(order) + 1):
        assert abs(order[:n].count("ann") - order[:n].count("ben")) <= 1, order


def test_max_runtime_kills_the_job_and_names_the_limit(cluster, tmp_path):
    script = "#!/bin/sh\n(sleep 120; echo child) &\nsleep 120\n"
    (job,) = cluster.submit(tmp_path, "executable = slow.sh\nmax_runtime = 2s\n", {"slow.sh": script})
    done = cluster.wait_job(job["id"], timeout=30)
    assert done["state"] == "failed"
    assert done["reason"] == "killed: ran past max_runtime (2s)"
    assert 2 <= done["run_seconds"] < 10


def test_a_job_over_its_memory_request_is_killed_and_told_why(cluster, tmp_path):
    hog = (
        "import time\nblock = bytearray(300 * 1024 * 1024)\nblock[::4096] = b'x' * len(block[::4096])\ntime.sleep(30)\n"
    )
    (job,) = cluster.submit(tmp_path, "executable = hog.py\nrequest_memory = 100MB\n", {"hog.py": hog})
    done = cluster.wait_job(job["id"], timeout=30)
    assert done["state"] == "failed"
    assert done["reason"] == "killed: used more memory than request_memory (100 MB); ask for more"
    assert done["max_rss_mb"] >= 100  # its cgroup let it reach its request and no further


def test_hold_of_a_running_job_stops_it_and_requeues_it_held(cluster, tmp_path):
    (job,) = cluster.submit(tmp_path, "executable = h.sh\n", {"h.sh": "#!/bin/sh\necho run $DCT_ATTEMPT\nsleep 60\n"})
    cluster.wait_job(job["id"], states=("running",))
    (answer,) = cluster.json("hold", str(job["id"]), "--json")["jobs"]
    assert answer["state"] == "held", "the answer shows it held at once, while its node stops it"
    held = wait_until(lambda: (j := cluster.job(job["id"]))["node"] is None and j, 10, "the job to have stopped")
    assert held["attempts"] == 1 and held["state"] == "held"
    cluster.cli("release", str(job["id"]))
    again = cluster.wait_job(job["id"], states=("running",))
    assert again["attempts"] == 2
    cluster.cli("cancel", str(job["id"]))
    assert cluster.wait_job(job["id"], timeout=10)["state"] == "cancelled"


def test_redis_restarted_empty_while_jobs_are_dispatched_loses_none(tmp_path):
    from tests.support.cluster import Cluster

    with Cluster(tmp_path / "c", node_timeout=120) as c:
        c.start_node("node-1", slots=2)
        c.signal_node("node-1", signal.SIGSTOP)  # it cannot take the messages now
        jobs = c.submit(tmp_path / "s", "executable = r.sh\nqueue = 2\n", {"r.sh": "#!/bin/sh\necho ran\n"})
        ids = [j["id"] for j in jobs]
        wait_until(lambda: all(c.job(i)["state"] == "dispatched" for i in ids), 20, "both jobs dispatched")
        c.restart_redis()  # the messages are gone
        c.signal_node("node-1", signal.SIGCONT)
        done = [c.wait_job(i, timeout=90) for i in ids]
        assert [j["state"] for j in done] == ["succeeded", "succeeded"]
        assert [j["attempts"] for j in done] == [1, 1], "re-sent, not re-dispatched"
        assert [c.cli("logs", str(i)).stdout for i in ids] == ["ran\n", "ran\n"]


def test_scheduler_restart_loses_no_job_and_runs_none_twice(fresh_cluster, tmp_path):
    c = fresh_cluster
    c.start_node("node-1", slots=2)
    script = "#!/bin/sh\necho once $DCT_PROCESS\nsleep 1\n"
    jobs = c.submit(tmp_path, "executable = s.sh\nqueue = 6\n", {"s.sh": script})
    c.wait_job(jobs[0]["id"], states=("running", "succeeded"))
    for proc in list(c.others):  # kill -9 every scheduler, then start a fresh one
        proc.kill()
        proc.wait()
    c.others.clear()
    c.start_scheduler()
    done = [c.wait_job(j["id"], timeout=90) for j in jobs]
    assert all(j["state"] == "succeeded" and j["attempts"] == 1 for j in done), done
    assert [c.cli("logs", str(j["id"])).stdout for j in jobs] == [f"once {i}\n" for i in range(6)]


def test_a_scheduler_killed_while_a_child_waits_for_its_parent_and_a_retry_waits_loses_nothing(
    fresh_cluster, tmp_path, gate
):
    # kill -9 of every scheduler while a parent ends (its child not yet released) and while a failed job
    # waits out its retry delay: a fresh scheduler releases both, each runs exactly once more.
    c = fresh_cluster
    c.start_node("node-1", slots=2)
    # The parent runs until the schedulers are dead (a `sleep 12` had ended, under load, before the
    # test had submitted the other two). The retry delay is the time the test has to see the failed
    # job waiting and kill the schedulers: 4 s was not always enough under load.
    files = {
        "p.sh": f"#!/bin/sh\n{gate.command}\necho parent\n",
        "c.sh": "#!/bin/sh\necho child $DCT_ATTEMPT\n",
        "f.sh": '#!/bin/sh\necho run $DCT_ATTEMPT\n[ "$DCT_ATTEMPT" = 2 ]\n',
    }
    (parent,) = c.submit(tmp_path / "p", "executable = p.sh\n", files)
    (child,) = c.submit(tmp_path / "c", f"executable = c.sh\nafter_ok = {parent['id']}\n", files)
    (flaky,) = c.submit(tmp_path / "f", "executable = f.sh\nmax_retries = 1\nretry_delay = 20s\n", files)
    c.wait_job(parent["id"], states=("running",), timeout=90)
    wait_until(lambda: c.job(flaky["id"])["attempts"] == 1 and c.job(flaky["id"])["state"] == "waiting", 60,
               "the flaky job's first run to fail and wait for its retry")  # fmt: skip
    for proc in list(c.others):
        proc.kill()
        proc.wait()
    c.others.clear()
    waited = c.job(flaky["id"])
    assert (waited["state"], waited["attempts"]) == ("waiting", 1), "killed while the retry waited"
    gate.open()
    c.wait_job(parent["id"], states=("succeeded",), timeout=DONE_SECONDS)  # no scheduler running
    assert c.job(child["id"])["state"] == "waiting", "nothing but a scheduler releases the child"
    c.start_scheduler()
    done = {j["id"]: c.wait_job(j["id"], timeout=DONE_SECONDS) for j in (child, flaky)}
    assert done[child["id"]]["state"] == "succeeded" and done[child["id"]]["attempts"] == 1
    assert done[child["id"]]["started_at"] >= c.job(parent["id"])["finished_at"]
    assert (done[flaky["id"]]["state"], done[flaky["id"]]["attempts"]) == ("succeeded", 2)
    assert [a["state"] for a in done[flaky["id"]]["attempt_history"]] == ["failed", "succeeded"]
    assert c.cli("logs", str(child["id"])).stdout == "child 1\n"
    assert c.cli("logs", str(flaky["id"])).stdout == "run 2\n"


def test_gpus_are_allocated_by_index_and_each_job_sees_only_its_own(fresh_cluster, tmp_path):
    c = fresh_cluster
    c.start_node("gpu-1", slots=4, env={"DCT_GPUS": "2"})
    assert len(c.node("gpu-1")["gpus"]) == 2
    script = "#!/bin/sh\necho gpus=$CUDA_VISIBLE_DEVICES\nsleep 3\n"
    jobs = c.submit(tmp_path, "executable = g.sh\nrequest_gpus = 1\nqueue = 3\n", {"g.sh": script})
    done = [c.wait_job(j["id"], timeout=60) for j in jobs]
    # The node's GPUs 0 and 1 go to the first two jobs, the third gets the one freed first.  In its
    # sandbox each job has only its own device, so CUDA numbers it 0 there, as under Slurm's
    # ConstrainDevices (an unfenced job would see the node's index).
    assert sorted(j["gpu_indices"] for j in done[:2]) == [[0], [1]], done
    assert done[2]["gpu_indices"] in ([0], [1])
    seen = [c.cli("logs", str(j["id"])).stdout.strip() for j in jobs]
    assert seen == ["gpus=0"] * 3, seen
    third = max(done, key=started)
    assert started(third) >= min(datetime.fromisoformat(j["finished_at"]) for j in done if j is not third)
    (cpu_job,) = c.submit(tmp_path / "c", "executable = g.sh\n", {"g.sh": script})
    c.wait_job(cpu_job["id"], timeout=60)
    assert c.cli("logs", str(cpu_job["id"])).stdout.strip() == "gpus="
