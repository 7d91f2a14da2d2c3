"""Labels, GPU kinds and ClassAd requirements and rank choose the node and the GPUs, with two real node
workers that differ (one cluster for the module)."""

import itertools
from datetime import datetime

import pytest

from tests.support.cluster import DONE_SECONDS, Cluster

pytestmark = pytest.mark.integration

SCRIPT = "#!/bin/sh\necho gpus=$CUDA_VISIBLE_DEVICES\n"


@pytest.fixture(scope="module")
def two_kinds(tmp_path_factory):
    """node-1 has an A100 (index 0) and a T4 (index 1); node-2 only an A100, and the labels fastnet, bigmem."""
    with Cluster(tmp_path_factory.mktemp("cluster")) as c:
        c.start_node("node-1", slots=2, env={"DCT_NODE_LABELS": "gpu", "DCT_GPUS": "A100:40GB:8.0,T4:16GB:7.5"})
        c.start_node("node-2", slots=2, env={"DCT_NODE_LABELS": "fastnet,bigmem", "DCT_GPUS": "A100:40GB:8.0"})
        yield c


def test_labels_and_gpu_type_choose_the_node_and_the_gpu_index(two_kinds, tmp_path):
    c = two_kinds
    before = {j["id"] for j in c.json("jobs", "--all")["jobs"]}
    one = c.node("node-1")
    assert one["labels"] == ["gpu"]
    assert one["gpu_devices"] == [
        {"index": 0, "name": "A100", "memory_mb": 40960},
        {"index": 1, "name": "T4", "memory_mb": 16384},
    ]
    assert c.node("node-2")["labels"] == ["fastnet", "bigmem"]
    table = c.cli("nodes").stdout
    assert "2 A100,T4" in table and "fastnet,bigmem" in table, table

    (labelled,) = c.submit(tmp_path / "l", "executable = g.sh\nlabels = fastnet, bigmem\n", {"g.sh": SCRIPT})
    (t4,) = c.submit(tmp_path / "t", "executable = g.sh\ngpu_type = t4\nrequest_gpus = 1\n", {"g.sh": SCRIPT})
    labelled, t4 = c.wait_job(labelled["id"]), c.wait_job(t4["id"])
    assert (labelled["state"], labelled["node"]) == ("succeeded", "node-2"), labelled
    assert (t4["state"], t4["node"], t4["gpu_indices"]) == ("succeeded", "node-1", [1]), t4
    # In its sandbox the job has only the T4's device, which CUDA numbers 0 (see tasks.cuda_visible_devices).
    assert c.cli("logs", str(t4["id"])).stdout.strip() == "gpus=0"

    # A choice no registered node could ever meet is refused at submit, naming the line and what exists.
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "g.sh").write_text(SCRIPT)
    (tmp_path / "x" / "job.txt").write_text("executable = g.sh\ngpu_type = H100\n")
    refused = c.cli("submit", "job.txt", check=False, cwd=tmp_path / "x")
    assert refused.returncode != 0
    assert (
        "job.txt:2: gpu_type: no node has 1 H100 GPU; "
        "GPUs on nodes: A100 40960 MB cc 8, T4 16384 MB cc 7.5 (node-1); A100 40960 MB cc 8 (node-2)"
    ) in refused.stderr, refused.stderr
    assert {j["id"] for j in c.json("jobs", "--all")["jobs"]} - before == {t4["id"], labelled["id"]}


def test_requirements_and_rank_choose_the_node_and_a_request_no_node_meets_is_refused(two_kinds, tmp_path):
    c = two_kinds
    before = {j["id"] for j in c.json("jobs", "--all")["jobs"]}
    # Both nodes meet it and are idle: best fit would take node-1 (ties go by name); rank (fewest GPUs: keep the
    # GPU box free) says node-2.
    (ranked,) = c.submit(
        tmp_path / "r", "executable = g.sh\nrequirements = GPUs >= 1\nrank = -GPUs\n", {"g.sh": SCRIPT}
    )
    ranked = c.wait_job(ranked["id"])
    assert (ranked["state"], ranked["node"]) == ("succeeded", "node-2"), ranked
    # Only node-2 has fastnet (best fit would again take node-1).
    needs_fastnet = (
        "executable = g.sh\nrequest_memory = 64MB\nrequest_disk = 1MB\n"
        'requirements = Has_fastnet && Memory >= RequestMemory && Disk >= RequestDisk && OpSys == "LINUX"\n'
    )
    (fastnet,) = c.submit(tmp_path / "f", needs_fastnet, {"g.sh": SCRIPT})
    fastnet = c.wait_job(fastnet["id"])
    assert (fastnet["state"], fastnet["node"]) == ("succeeded", "node-2"), fastnet

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "g.sh").write_text(SCRIPT)
    (tmp_path / "x" / "job.sub").write_text(
        'executable = g.sh\nrequirements = (OpSys == "LINUX") && Has_fastnet && Has_bigmem && (GPUs >= 2)\nqueue 5\n'
    )
    refused = c.cli("submit", "job.sub", check=False, cwd=tmp_path / "x")
    assert refused.returncode != 0
    assert (
        "job.sub:2: requirements: no node meets it; the closest, node-2, fails GPUs >= 2 (its GPUs is 1)"
    ) in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert {j["id"] for j in c.json("jobs", "--all")["jobs"]} - before == {fastnet["id"], ranked["id"]}


def test_a_cap_on_running_jobs_starts_one_at_a_time_and_the_waiting_ones_name_it(two_kinds, tmp_path, gate):
    c = two_kinds
    c.cli("token", user="alice")  # makes the account, should this test run alone
    c.cli("limits", "alice", "--max-running-jobs", "1")
    try:
        # The first runs until the test has read the others: under load a `sleep 2` can end before the
        # submit command has returned, and a wait to see it running then runs out.
        script = f'#!/bin/sh\n[ "$DCT_PROCESS" != 0 ] || {gate.command}\nsleep 2\n'
        jobs = c.submit(tmp_path / "cap", "executable = s.sh\nqueue 3\n", {"s.sh": script})
        # Four free slots, but alice may run one job at a time: while the first runs, the others say why.
        first = c.wait_job(jobs[0]["id"], states=("running",))
        waiting = [c.job(j["id"]) for j in jobs[1:]]
        assert all(j["state"] == "queued" for j in waiting), waiting
        assert waiting[0]["reason"] == (
            "held back by a cap: alice may run 1 jobs at once and runs 1 (DCT_MAX_RUNNING_JOBS or ./dct limits alice)"
        )
        gate.open()
        done = [c.wait_job(j["id"], timeout=DONE_SECONDS) for j in jobs]
        assert all(j["state"] == "succeeded" for j in done), done
        runs = sorted((datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"])) for j in done)
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(runs)), runs
        assert first["id"] == jobs[0]["id"]
    finally:
        c.cli("limits", "alice", "--default")


def test_group_shares_shape_the_order_of_starts_on_a_one_slot_node(fresh_cluster, tmp_path):
    """bio (share 3: ann) and chem (share 1: ben): with equal usage at first, ann gets about three starts
    for each of ben's, where two users alone alternate (test_scheduling)."""
    c = fresh_cluster
    c.start_node("node-1", slots=1)
    for name in ("ann", "ben"):
        c.cli("token", user=name)  # makes the account
    c.cli("group", "add", "bio", "--share", "3")
    c.cli("group", "add", "chem")
    c.cli("group", "member", "bio", "ann")
    c.cli("group", "member", "chem", "ben")
    # Hold the node with a blocker so that both users' jobs are queued before any starts.
    (blocker,) = c.submit(tmp_path / "x", "executable = b.sh\n", {"b.sh": "#!/bin/sh\nsleep 60\n"}, user="zed")
    c.wait_job(blocker["id"], states=("running",), user="zed")
    job, files = "executable = q.sh\nqueue 6\n", {"q.sh": "#!/bin/sh\nsleep 1\n"}
    a = c.submit(tmp_path / "a", job, files, user="ann")
    b = c.submit(tmp_path / "b", "accounting_group = chem\n" + job, files, user="ben")
    assert {j["accounting_group"] for j in a} == {"bio"} and {j["accounting_group"] for j in b} == {"chem"}
    # ben is not in bio: refused at the line, nothing queued.
    (tmp_path / "b" / "bio.txt").write_text("accounting_group = bio\n" + job)
    refused = c.cli("submit", "bio.txt", check=False, cwd=tmp_path / "b", user="ben")
    assert refused.returncode != 0
    assert "bio.txt:1: accounting_group = bio: ben is not a member of group 'bio' (their groups: chem)" in (
        refused.stderr
    ), refused.stderr
    assert len(c.json("jobs", "--all", user="ben")["jobs"]) == 6
    c.cli("cancel", str(blocker["id"]), user="zed")
    done = [c.wait_job(j["id"], user=u, timeout=90) for u, js in (("ann", a), ("ben", b)) for j in js]
    assert all(j["state"] == "succeeded" for j in done), done
    order = [j["owner"] for j in sorted(done, key=lambda j: datetime.fromisoformat(j["started_at"]))]
    # By the shares, bio's usage counts a third: ann's first three start before ben's second, and all six of
    # hers before his fourth (two users of equal share alternate: her sixth would start after his fifth).
    ben_starts = [k for k, owner in enumerate(order) if owner == "ben"]
    assert order[: ben_starts[1]].count("ann") >= 3, order
    assert order[: ben_starts[3]].count("ann") == 6, order
    usage = {g["group"]: g for g in c.json("usage")["groups"]}
    assert (usage["bio"]["share"], usage["bio"]["members"], usage["chem"]["members"]) == (3.0, ["ann"], ["ben"])
    # The same work charged to each (six one-second jobs), which bio's share makes count a third.
    assert usage["bio"]["usage"] == pytest.approx(usage["chem"]["usage"], rel=0.2) and usage["chem"]["usage"] > 6
    assert usage["bio"]["effective_usage"] < usage["chem"]["effective_usage"] / 2
    assert (usage["bio"]["priority"], usage["chem"]["priority"]) == (1, 2)


def test_priority_orders_a_users_own_jobs_on_a_one_slot_node(fresh_cluster, tmp_path):
    """ann's later jobs with priority = 5 start before her earlier ones at the default 0 (judged from start
    times; without priority a user's jobs start in submission order)."""
    c = fresh_cluster
    c.start_node("node-1", slots=1)
    (blocker,) = c.submit(tmp_path / "x", "executable = b.sh\n", {"b.sh": "#!/bin/sh\nsleep 60\n"}, user="zed")
    c.wait_job(blocker["id"], states=("running",), user="zed")
    files = {"q.sh": "#!/bin/sh\nsleep 1\n"}
    low = c.submit(tmp_path / "low", "executable = q.sh\nname = low\nqueue 3\n", files, user="ann")
    high = c.submit(tmp_path / "high", "executable = q.sh\nname = high\npriority = 5\nqueue 2\n", files, user="ann")
    c.cli("cancel", str(blocker["id"]), user="zed")
    done = [c.wait_job(j["id"], user="ann", timeout=90) for j in low + high]
    assert all(j["state"] == "succeeded" for j in done), done
    order = [j["name"] for j in sorted(done, key=lambda j: datetime.fromisoformat(j["started_at"]))]
    assert order == ["high", "high", "low", "low", "low"], order


def seconds_run(job: dict) -> float:
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


def test_billing_weighs_gpus_so_a_user_whose_past_jobs_held_gpus_goes_after_one_who_ran_longer(tmp_path):
    """DCT_BILLING=cpu=1,gpu=8 on a one-slot node with one GPU: ann's earlier job held the GPU for about 2 s
    (billed 9 a second), ben's ran about 5 s on a cpu alone (billed 1 a second).  By cpu-seconds ann used less
    and would go first; billed, she used more, so ben's queued jobs start before hers (judged from start times)."""
    with Cluster(tmp_path / "cluster", extra_env={"DCT_BILLING": "cpu=1,gpu=8"}) as c:
        c.start_node("node-1", slots=1, env={"DCT_GPUS": "A100:40GB:8.0"})
        (gpu_job,) = c.submit(
            tmp_path / "g", "executable = s.sh\nrequest_gpus = 1\n", {"s.sh": "#!/bin/sh\nsleep 2\n"}, user="ann"
        )
        (cpu_job,) = c.submit(tmp_path / "c", "executable = s.sh\n", {"s.sh": "#!/bin/sh\nsleep 5\n"}, user="ben")
        gpu_job, cpu_job = c.wait_job(gpu_job["id"], user="ann"), c.wait_job(cpu_job["id"], user="ben")
        assert (gpu_job["state"], gpu_job["gpu_indices"], cpu_job["state"]) == ("succeeded", [0], "succeeded")
        # The premise that makes this test fail if GPUs were not billed: by wall (cpu) seconds, ann used less.
        assert seconds_run(gpu_job) < seconds_run(cpu_job), (gpu_job, cpu_job)
        usage = {u["user"]: u["usage"] for u in c.json("usage", user="ann")["users"]}
        # Billed: 9 a second for ann's (a cpu and a GPU), 1 for ben's (the node measures the time charged, close
        # to the recorded start and end), so she has used more.
        assert usage["ann"] == pytest.approx(9 * seconds_run(gpu_job), rel=0.25), (usage, gpu_job)
        assert usage["ben"] == pytest.approx(seconds_run(cpu_job), rel=0.25), (usage, cpu_job)
        assert usage["ann"] > usage["ben"] * 2, usage

        (blocker,) = c.submit(tmp_path / "x", "executable = b.sh\n", {"b.sh": "#!/bin/sh\nsleep 60\n"}, user="zed")
        c.wait_job(blocker["id"], states=("running",), user="zed")
        job, files = "executable = q.sh\nqueue 2\n", {"q.sh": "#!/bin/sh\nsleep 1\n"}
        a = c.submit(tmp_path / "a", job, files, user="ann")  # ann queues first: submission order favours her
        b = c.submit(tmp_path / "b", job, files, user="ben")
        c.cli("cancel", str(blocker["id"]), user="zed")
        done = [c.wait_job(j["id"], user=u, timeout=90) for u, js in (("ann", a), ("ben", b)) for j in js]
        assert all(j["state"] == "succeeded" for j in done), done
        order = [j["owner"] for j in sorted(done, key=lambda j: datetime.fromisoformat(j["started_at"]))]
        # ben's two short jobs (about 1 billed each) still leave him under ann's GPU-weighted usage.
        assert order == ["ben", "ben", "ann", "ann"], order
