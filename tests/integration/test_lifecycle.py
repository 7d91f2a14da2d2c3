"""The job life cycle end to end: real Redis, real scheduler, real node workers, the real CLI."""

from datetime import datetime

import pytest

from tests.support.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engine]

HELLO = """\
import sys
print("hello", *sys.argv[1:])
print(open("data.csv").read().strip().upper())
open("result.txt", "w").write("42\\n")
"""


def test_seed_format_job_returns_stdout_and_output_file(cluster, tmp_path):
    (job,) = cluster.submit(
        tmp_path,
        "executable = hello.py\ndata = data.csv\nemail = me@lab.org\nclient = 2\n",
        {"hello.py": HELLO, "data.csv": "a,b\n"},
    )
    # submit answers the rows as it reads them back; a quick scheduler may have placed the job already.
    assert job["state"] in ("queued", "dispatched", "running") and job["request_cpus"] == 1, job
    done = cluster.wait_job(job["id"])
    assert done["state"] == "succeeded", done
    assert done["exit_code"] == 0 and done["node"] == "node-2" and done["attempts"] == 1
    assert done["run_seconds"] is not None and done["cpu_seconds"] is not None
    out = cluster.cli("results", str(job["id"]), cwd=tmp_path)
    assert f"TASK{job['id']}/" in out.stdout
    task = tmp_path / f"TASK{job['id']}"
    assert (task / "stdout").read_text() == "hello\nA,B\n"
    assert (task / "result.txt").read_text() == "42\n"
    assert (task / "stderr").read_text() == ""
    assert not (task / "data.csv").exists(), "inputs are not outputs"


def test_failing_job_ends_failed_with_its_traceback_in_stderr(cluster, tmp_path):
    (job,) = cluster.submit(tmp_path, "executable = boom.py\n", {"boom.py": "raise ValueError('no good')\n"})
    done = cluster.wait_job(job["id"])
    assert done["state"] == "failed" and done["exit_code"] == 1
    assert done["reason"] == "exit status 1"
    stderr = cluster.cli("logs", str(job["id"]), "--stderr").stdout
    assert "Traceback" in stderr and "ValueError: no good" in stderr


def test_two_jobs_run_at_once_on_two_nodes_and_a_third_waits(cluster, tmp_path):
    sleeper = "#!/bin/sh\nsleep 4\necho done $1\n"
    jobs = cluster.submit(tmp_path, "executable = nap.sh\narguments = $(Process)\nqueue = 3\n", {"nap.sh": sleeper})
    ids = [j["id"] for j in jobs]

    def two_running():
        js = [j for j in cluster.json("jobs")["jobs"] if j["id"] in ids]
        return js if sum(j["state"] == "running" for j in js) == 2 else None

    # While two run, the third is kept queued in the database, with a reason.
    running = wait_until(two_running, 30, "two jobs running")
    waiting = [j for j in running if j["state"] == "queued"]
    assert len(waiting) == 1 and waiting[0]["reason"], running
    done = [cluster.wait_job(i) for i in ids]
    assert all(j["state"] == "succeeded" for j in done), done
    first, second, third = sorted(done, key=lambda j: j["started_at"])
    start = lambda j: datetime.fromisoformat(j["started_at"])  # noqa: E731
    end = lambda j: datetime.fromisoformat(j["finished_at"])  # noqa: E731
    assert start(second) < end(first), "the first two ran at the same time"
    assert {first["node"], second["node"]} == {"node-1", "node-2"}
    assert start(third) >= min(end(first), end(second)), "the third waited for a free slot"
    assert [cluster.cli("logs", str(i)).stdout for i in ids] == ["done 0\n", "done 1\n", "done 2\n"]


def test_pinned_job_runs_on_its_node(cluster, tmp_path):
    jobs = cluster.submit(
        tmp_path, "executable = w.sh\nclient = 2\nqueue = 2\n", {"w.sh": "#!/bin/sh\necho $DCT_JOB_ID\n"}
    )
    assert [cluster.wait_job(j["id"])["node"] for j in jobs] == ["node-2", "node-2"]


def test_nodes_json_shows_both_nodes_with_metrics_and_fresh_heartbeat(cluster):
    nodes = {n["name"]: n for n in cluster.json("nodes")["nodes"]}
    assert {"node-1", "node-2"} <= set(nodes)
    for node in (nodes["node-1"], nodes["node-2"]):
        assert node["state"] in ("available", "busy")
        assert node["cpus"] >= 1 and node["threads"] >= node["cpus"]
        assert node["memory_total_mb"] > 0 and 0 < node["memory_available_mb"] <= node["memory_total_mb"]
        assert isinstance(node["gpus"], list) and isinstance(node["load"], float)
        assert isinstance(node["sandbox"], bool) and node["containers"] == []
        age = datetime.now().astimezone() - datetime.fromisoformat(node["last_heartbeat"])
        assert age.total_seconds() < 5


def test_submit_wait_exits_with_the_jobs_exit_status(cluster, tmp_path):
    (tmp_path / "three.sh").write_text("#!/bin/sh\necho going\nexit 3\n")
    (tmp_path / "job.txt").write_text("executable = three.sh\n")
    done = cluster.cli("submit", "job.txt", "--wait", cwd=tmp_path, check=False)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "failed (exit status 3)" in done.stdout


def test_job_environment_is_scrubbed_of_server_secrets(cluster, tmp_path):
    script = (
        "import os, json\n"
        "print(json.dumps(sorted(os.environ)))\n"
        "print(os.environ.get('SECRET_KEY'), os.environ.get('GREETING'))\n"
    )
    (job,) = cluster.submit(tmp_path, 'executable = env.py\nenvironment = "GREETING=hi"\n', {"env.py": script})
    assert cluster.wait_job(job["id"])["state"] == "succeeded"
    out = cluster.cli("logs", str(job["id"])).stdout
    names = set(__import__("json").loads(out.splitlines()[0]))
    assert out.splitlines()[1] == "None hi"
    assert not names & {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DCT_VAR", "EMAIL_HOST_PASSWORD"}
    assert {"DCT_JOB_ID", "HOME", "PATH"} <= names


def test_cancel_kills_a_running_job_and_hold_release_a_queued_one(cluster, tmp_path):
    jobs = cluster.submit(
        tmp_path, "executable = long.sh\nclient = 1\nqueue = 2\n", {"long.sh": "#!/bin/sh\nsleep 60\n"}
    )
    first, second = (j["id"] for j in jobs)
    cluster.wait_job(first, states=("running",))
    assert cluster.cli("hold", str(second)).returncode == 0
    assert cluster.job(second)["state"] == "held"
    assert "held by its owner" in cluster.job(second)["reason"]
    cluster.cli("cancel", str(first))
    done = cluster.wait_job(first, timeout=5)
    assert done["state"] == "cancelled"
    # The slot is free again, but the held job stays out of scheduling.
    assert cluster.job(second)["state"] == "held"
    cluster.cli("release", str(second))
    cluster.wait_job(second, states=("running",))
    cluster.cli("cancel", str(second))
    assert cluster.wait_job(second, timeout=5)["state"] == "cancelled"


def test_another_user_cannot_see_or_touch_my_job(cluster, tmp_path):
    (job,) = cluster.submit(tmp_path, "executable = q.sh\n", {"q.sh": "#!/bin/sh\necho private\n"}, user="carol")
    for cmd in (["job", str(job["id"])], ["cancel", str(job["id"])], ["logs", str(job["id"])]):
        done = cluster.cli(*cmd, user="mallory", check=False)
        assert done.returncode == 1
        assert f"no job {job['id']} of yours" in done.stderr
        assert "Traceback" not in done.stderr
    assert cluster.json("jobs", "--all", user="mallory")["jobs"] == []
