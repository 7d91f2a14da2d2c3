"""The Python client on a real cluster: Client.submit -> wait -> results locally (a Python process on the
server's machine, acting for its user) and remotely (the API, through gunicorn, with no database);
Executor calls as jobs: a value, an exception with the remote traceback, and map in chunks."""

import json
import subprocess
import textwrap

import pytest

from dctoolkit.client import Client, ClientError, Executor, JobFailedError, RemoteTraceback, SubmissionRefusedError
from tests.support.cluster import PYTHON, ROOT, wait_until
from tests.support.web import start_web

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def remote(cluster):
    """A Client for alice, through the API."""
    server = start_web(cluster)
    token = cluster.cli("token", user="alice").stdout.strip()
    return Client(server=server, token=token)


def run_python(cluster, script: str, cwd) -> str:
    """Run `script` in a Python on the server's machine, as alice; its stdout."""
    env = {**cluster.env, "USER": "alice", "LOGNAME": "alice", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [PYTHON, "-c", textwrap.dedent(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def run_locally(cluster, script: str, cwd) -> dict:
    """Run `script` (which prints one JSON document last) as run_python does; that document."""
    return json.loads(run_python(cluster, script, cwd).splitlines()[-1])


def test_submit_wait_results_locally(cluster, tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho hello from $DCT_JOB_ID\ncat in.txt > copy.txt\n")
    (tmp_path / "in.txt").write_text("input data\n")
    (tmp_path / "job.txt").write_text("executable = run.sh\ndata = in.txt\n")
    seen = run_locally(
        cluster,
        """
        import json
        from pathlib import Path
        from dctoolkit.client import Client, SubmissionRefusedError
        client = Client()
        assert not client.remote
        jobs = client.submit("job.txt")
        done = client.wait(jobs[0]["id"], timeout=120)
        dest = client.results(done["id"], "out")
        try:
            client.submit("executable = run.sh\\nexecutabel = x\\n")
            refused = None
        except SubmissionRefusedError as exc:
            refused = str(exc)
        print(json.dumps({"jobs": jobs, "done": done, "stdout": (dest / "stdout").read_text(),
                          "copy": (dest / "copy.txt").read_text(), "refused": refused}))
        """,
        tmp_path,
    )
    (job,) = seen["jobs"]
    assert job["owner"] == "alice" and job["state"] in ("queued", "dispatched", "running", "succeeded")
    assert seen["done"]["id"] == job["id"] and seen["done"]["state"] == "succeeded"
    assert seen["stdout"] == f"hello from {job['id']}\n"
    assert seen["copy"] == "input data\n"
    assert seen["refused"] == "submission:2: unknown key 'executabel' — did you mean 'executable'?"
    assert cluster.job(job["id"])["state"] == "succeeded"


def test_submit_wait_results_remotely(cluster, remote, tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho remote $1\ncat in.txt > copy.txt\n")
    (tmp_path / "in.txt").write_text("far data\n")
    (tmp_path / "job.txt").write_text("executable = run.sh\narguments = yes\ndata = in.txt\n")
    (job,) = remote.submit(tmp_path / "job.txt")
    assert job["owner"] == "alice"
    done = remote.wait(job["id"], timeout=120)
    assert done["state"] == "succeeded" and done["exit_code"] == 0
    dest = remote.results(job["id"], tmp_path / "out")
    assert (dest / "stdout").read_text() == "remote yes\n"
    assert (dest / "copy.txt").read_text() == "far data\n"
    # Files given by name, with the submission as text.
    (second,) = remote.submit("executable = run.sh\ndata = in.txt\n", files={"run.sh": tmp_path / "run.sh",
                                                                            "in.txt": tmp_path / "in.txt"})  # fmt: skip
    assert remote.wait(second["id"], timeout=120)["state"] == "succeeded"


def test_remote_refusals_are_the_servers_messages(cluster, remote, tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\nsleep 60\n")
    with pytest.raises(SubmissionRefusedError) as caught:
        remote.submit("executable = run.sh\nrequest_cpus = 512\n", files={"run.sh": tmp_path / "run.sh"})
    assert str(caught.value).startswith("submission:2: request_cpus asks for 512 cpus but the largest node has")
    with pytest.raises(ClientError, match="no job 999999 of yours"):
        remote.job(999999)
    bob = cluster.json("submit", "--script", str(tmp_path / "run.sh"), user="bob")["jobs"][0]
    with pytest.raises(ClientError, match=f"no job {bob['id']} of yours"):
        remote.cancel(bob["id"])  # another user's job is not there for alice
    (mine,) = remote.submit("executable = run.sh\n", files={"run.sh": tmp_path / "run.sh"})
    with pytest.raises(TimeoutError, match=f"job {mine['id']} is still (queued|dispatched|running) after 0.5 s"):
        remote.wait(mine["id"], timeout=0.5)
    # The answer to cancelling a running job is the pipelines work's (issue 17: `cancelled` at once); the end is ours.
    assert remote.cancel(mine["id"])["id"] == mine["id"]
    assert remote.wait(mine["id"], timeout=60)["state"] == "cancelled"
    cluster.cli("cancel", str(bob["id"]), user="bob")


def test_executor_value_exception_and_map_in_chunks(cluster, remote):
    offset = 1000

    def shifted(x, y=0):
        return x * x + y + offset

    def boom(word):
        raise ValueError(f"bad {word}")

    with Executor(cpus=1, memory="100MB", client=remote) as pool:
        value = pool.submit(shifted, 3, y=1)
        failing = pool.submit(boom, "input")
        mapped = list(pool.map(shifted, range(5), chunksize=2))
        assert value.result(timeout=180) == 1010
        with pytest.raises(ValueError, match="bad input") as caught:
            failing.result(timeout=180)
    assert mapped == [1000, 1001, 1004, 1009, 1016]
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in boom" in cause.text and cause.text.rstrip().endswith("ValueError: bad input")
    assert remote.job(failing.job_id)["state"] == "failed"
    assert remote.job(value.job_id)["state"] == "succeeded"
    # 5 items in chunks of 2: 3 jobs, named after the function.
    jobs = [j for j in remote.backend.http.jobs({}, limit=50) if j["name"].startswith("executor.")]
    assert len([j for j in jobs if j["name"] == "executor.shifted.chunk"]) == 3


def test_executor_locally(cluster, tmp_path):
    seen = run_locally(
        cluster,
        """
        import json
        from dctoolkit.client import Executor
        with Executor() as pool:
            future = pool.submit(sum, [1, 2, 3])
            print(json.dumps({"value": future.result(timeout=120), "job": future.job_id}))
        """,
        tmp_path,
    )
    assert seen["value"] == 6
    job = cluster.job(seen["job"])
    assert job["owner"] == "alice" and job["state"] == "succeeded"


def test_the_readmes_example_runs_as_written(cluster, tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From Python: Client and Executor") :]
    example = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 1)]
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "job.txt").write_text("executable = run.sh\n")
    out = run_python(cluster, example, tmp_path).splitlines()
    assert out == [
        "succeeded 0",
        "submission:2: unknown key 'executabel' — did you mean 'executable'?",
        "144",
        "[0, 1, 4, 9, 16]",
    ]
    assert (tmp_path / "out" / "stdout").read_text() == "hi\n"


def test_shutdown_with_cancel_futures_cancels_the_jobs_not_yet_started(cluster, remote):
    def nap(seconds):
        import time

        time.sleep(seconds)

    pool = Executor(client=remote, memory="100MB")
    # Two nodes of one slot each: two calls run, the third waits in the queue.
    running = [pool.submit(nap, 120) for _ in range(2)]
    waiting = pool.submit(nap, 120)
    wait_until(lambda: all(f.running() for f in running), 120, "the first two calls to run", interval=0.2)
    assert not waiting.running() and remote.job(waiting.job_id)["state"] == "queued"
    pool.shutdown(wait=False, cancel_futures=True)
    assert waiting.cancelled()
    assert remote.wait(waiting.job_id, timeout=60)["state"] == "cancelled"
    for future in running:  # started calls are not cancelled by shutdown: end them here
        assert not future.cancelled()
        remote.cancel(future.job_id)
        with pytest.raises(JobFailedError, match=f"job {future.job_id} ended cancelled"):
            future.result(timeout=60)
    pool.shutdown(wait=True)
