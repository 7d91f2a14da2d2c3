"""The workflow tools that ship with dctoolkit, run for real on a real cluster: Snakemake (its
cluster-generic executor with dct's own commands, and the native `--executor dctoolkit` plugin),
dask-jobqueue (`dctoolkit.client.dask.DCTCluster`) and submitit (`AutoExecutor(cluster="dctoolkit")`).

The tools live in their own virtual environment (requirements-tools.txt; `.ci/run` makes it and names it
in DCT_TOOLS_VENV), never in the project's: without it these tests are skipped here, and fail under CI.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, wait_until

# nodeside: the database engine plays no part in what the tools do; .ci/run runs these once, on SQLite.
pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

TOOLS_VENV = Path(os.environ.get("DCT_TOOLS_VENV") or "/nonexistent-dct-tools-venv")
TOOLS_BIN = TOOLS_VENV / "bin"
WANTED = ("snakemake", "dct", "dct-cancel", "python")
# What the tools' Python must import: the tools, and this checkout's integrations installed into it.
MODULES = ("snakemake_executor_plugin_dctoolkit", "snakemake_executor_plugin_cluster_generic", "dctoolkit.client.dask",
           "dctoolkit.client.submitit")  # fmt: skip


def require_tools() -> None:
    """Skip (locally) or fail (CI=true, or DCT_TOOLS_VENV set, as .ci/run sets it: the tools must be there)
    without the tools' venv."""
    missing = [name for name in WANTED if not (TOOLS_BIN / name).exists()]
    if not missing:
        imports = subprocess.run([str(TOOLS_BIN / "python"), "-c", f"import {', '.join(MODULES)}"],
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
        if imports.returncode == 0:
            return
        missing = [imports.stderr.strip().splitlines()[-1] if imports.stderr.strip() else "an import failed"]
    why = (
        f"the workflow tools' virtual environment is missing or incomplete ({TOOLS_VENV}: {', '.join(missing)}); "
        "make it as .ci/run does (requirements-tools.txt, then pip install -e . and the plugin) and set "
        "DCT_TOOLS_VENV"
    )
    if os.environ.get("CI") == "true" or os.environ.get("DCT_TOOLS_VENV"):
        pytest.fail(f"CI=true or DCT_TOOLS_VENV is set, but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def workroot(tmp_path_factory) -> Path:
    """The folder the workflows run in: outside the cluster's own (which jobs never see)."""
    return tmp_path_factory.mktemp("workflows")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, workroot):
    """One cluster for the module, with a web server for the API, whose nodes let jobs see the tools'
    virtual environment (read-only: Snakemake's and dask's job side run its Python) and `workroot`
    (read-write: Snakemake's jobs `cd` into the workflow's folder, submitit's write their results there).

    The tools' venv is software on the node (as a lab installs Snakemake), opened node-wide with
    DCT_SANDBOX_PATHS; `workroot` is granted to alice alone (`./dct grant alice DIR --rw`, by staff).
    """
    require_tools()
    from tests.support.web import start_web

    with Cluster(tmp_path_factory.mktemp("cluster")) as c:
        paths = {"DCT_SANDBOX_PATHS": str(TOOLS_VENV.resolve())}
        c.start_node("node-1", slots=2, env=paths)
        c.start_node("node-2", slots=1, env=paths)
        c.server = start_web(c, access_log=True)
        c.token = c.cli("token", user="alice").stdout.strip()
        c.cli("adduser", "boss", "--staff", input="staff-password-99\n")
        c.cli("grant", "alice", str(workroot), "--rw", user="boss")
        yield c


def tool_env(cluster, remote: bool = False) -> dict[str, str]:
    """What a user's shell has: the tools' venv first on PATH, acting as alice (locally, or through the API)."""
    env = {**cluster.env, "PATH": f"{TOOLS_BIN}:{os.environ['PATH']}", "USER": "alice", "LOGNAME": "alice"}
    if remote:
        env |= {"DCT_SERVER": cluster.server, "DCT_TOKEN": cluster.token}
    return env


def alices_jobs(cluster, name: str) -> list[dict]:
    """alice's jobs whose name contains `name`, oldest first."""
    return sorted(cluster.json("jobs", "--all", "--name", name)["jobs"], key=lambda j: j["id"])


# --- Snakemake -----------------------------------------------------------------------------------
SNAKEFILE = """
localrules: all

rule all:
    input: "c.txt"

rule a:
    output: "a{n}.txt"
    resources: mem_mb=200, runtime=5
    shell: "echo a-$DCT_JOB_ID > {output}"

rule b:
    input: "a1.txt", "a2.txt"
    output: "b.txt"
    threads: 2
    shell: "cat {input} > {output}; echo b-$OMP_NUM_THREADS >> {output}"

rule c:
    input: "b.txt"
    output: "c.txt"
    shell: "cat {input} > {output}; echo c >> {output}"
"""

FAILING = """
rule all:
    input: "never.txt"

rule broken:
    output: "never.txt"
    shell: "echo about to fail; exit 3"
"""

SLOW = """
rule all:
    input: "late.txt"

rule slow:
    output: "late.txt"
    shell: "sleep 120; touch {output}"
"""

# The cluster-generic line exactly as the README gives it (with the test's job names).
GENERIC = [
    "--executor", "cluster-generic",
    "--cluster-generic-submit-cmd",
    "dct submit --script --parsable --cpus {threads} --memory {resources.mem_mb}MB --name smk.{rule}",
    "--cluster-generic-status-cmd", "dct status --as snakemake",
    "--cluster-generic-cancel-cmd", "dct-cancel",
    "--default-resources", "mem_mb=500",
]  # fmt: skip
NATIVE = ["--executor", "dctoolkit"]
# What each says once it has submitted a job (the cluster-generic executor's line, the plugin's).
SUBMITTED = re.compile(r"with external jobid '(\d+)'|as dctoolkit job (\d+)")
# Look often: the jobs here take a second.
QUICK = ["--jobs", "4", "--seconds-between-status-checks", "1", "--max-status-checks-per-second", "10",
         "--latency-wait", "5"]  # fmt: skip


def workflow(workroot: Path, name: str, snakefile: str) -> Path:
    folder = workroot / name
    folder.mkdir()
    (folder / "Snakefile").write_text(textwrap.dedent(snakefile))
    return folder


def snakemake(cluster, folder: Path, executor: list[str], remote: bool = False, timeout: float = 150):
    return subprocess.run(
        [str(TOOLS_BIN / "snakemake"), *executor, *QUICK], cwd=folder, env=tool_env(cluster, remote),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize("executor", ["cluster-generic", "dctoolkit"])
def test_snakemake_runs_a_workflow_on_the_nodes(cluster, workroot, executor):
    folder = workflow(workroot, f"three-{executor}", SNAKEFILE)
    done = snakemake(
        cluster, folder, GENERIC if executor == "cluster-generic" else NATIVE, remote=executor == "dctoolkit"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Each job (a twice, b, c) ran in a job of its own, in the workflow's folder; b's 2 threads were its 2 cpus.
    lines = (folder / "c.txt").read_text().splitlines()
    assert [line[:2] for line in lines[:2]] == ["a-", "a-"] and lines[2:] == ["b-2", "c"], lines
    for job_a in (cluster.job(int(line.removeprefix("a-"))) for line in lines[:2]):
        assert job_a["state"] == "succeeded" and job_a["name"] == "smk.a" and job_a["request_memory_mb"] == 200
        if executor == "dctoolkit":  # the plugin maps runtime (minutes) too
            assert job_a["max_runtime_seconds"] == 300
    if executor == "dctoolkit":  # and polls all the workflow's jobs in one request (both a's: 1,2)
        requests = (cluster.logs / f"web-{cluster.server.rsplit(':', 1)[1]}.log").read_text()
        assert re.search(r'"GET /api/jobs/\?id=\d+%2C\d+ HTTP', requests), requests
        assert not re.search(r'"GET /api/jobs/\d+/ HTTP', requests), requests


@pytest.mark.parametrize("executor", ["cluster-generic", "dctoolkit"])
def test_snakemake_reports_a_failing_rule_failed(cluster, workroot, executor):
    folder = workflow(workroot, f"failing-{executor}", FAILING)
    before = {j["id"] for j in alices_jobs(cluster, "smk.broken")}
    # The plugin here on this machine's own dctoolkit (the local Client), as the other tests use the API.
    done = snakemake(cluster, folder, GENERIC if executor == "cluster-generic" else NATIVE)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Error in rule broken" in done.stderr, done.stderr
    (job,) = [j for j in alices_jobs(cluster, "smk.broken") if j["id"] not in before]
    assert job["state"] == "failed" and job["exit_code"] == 1
    if executor == "dctoolkit":
        assert f"dctoolkit job {job['id']} ended failed" in done.stderr, done.stderr
    assert "about to fail" in cluster.cli("logs", str(job["id"])).stdout
    assert not (folder / "never.txt").exists()


@pytest.mark.parametrize("executor", ["cluster-generic", "dctoolkit"])
def test_ctrl_c_cancels_snakemakes_jobs(cluster, workroot, executor):
    folder = workflow(workroot, f"slow-{executor}", SLOW)
    # Seldom polls, and Ctrl-C between two: the cluster-generic executor takes its jobs off the list it
    # cancels while it polls them (Snakemake's own race; the native plugin keeps a list of its own).
    argv = [str(TOOLS_BIN / "snakemake"), *(GENERIC if executor == "cluster-generic" else NATIVE), *QUICK,
            "--seconds-between-status-checks", "20"]  # fmt: skip
    # As a terminal's foreground program gets it: SIGINT at its default.  Started in the background by a
    # shell without job control (CI's), pytest and so Snakemake inherit SIGINT ignored, and Ctrl-C is lost.
    proc = subprocess.Popen(argv, cwd=folder, env=tool_env(cluster, remote=executor == "dctoolkit"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        # Once Snakemake has the job's id (its line), and the job runs.
        line = wait_until(lambda: next((s for s in said if SUBMITTED.search(s)), None), 90, "Snakemake to submit")
        job_id = int(next(g for g in SUBMITTED.search(line).groups() if g))
        cluster.wait_job(job_id, states=("running",), timeout=60)
        proc.send_signal(signal.SIGINT)
        try:
            ended = cluster.wait_job(job_id, timeout=60)  # a loaded machine: Snakemake, then dct-cancel, start slowly
        except AssertionError as exc:
            raise AssertionError("".join(said)) from exc
        assert ended["state"] == "cancelled", "".join(said)
        # (Snakemake itself then ends once its poller's pause is over: not waited for here.)
        assert "Terminating processes on user request" in "".join(said)
    finally:
        proc.kill()
        reader.join(10)
    assert not (folder / "late.txt").exists()


# --- dask-jobqueue and submitit: a Python of the tools' venv, as alice --------------------------------
def tools_python(cluster, script: str, cwd: Path, remote: bool = False, timeout: float = 150) -> list[dict]:
    """Run `script` in the tools' Python; the JSON documents it printed, one a line."""
    done = subprocess.run(
        [str(TOOLS_BIN / "python"), "-c", textwrap.dedent(script)], cwd=cwd, env=tool_env(cluster, remote),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_dask_jobqueue_scales_computes_and_close_cancels(cluster, workroot):
    folder = workroot / "dask"
    folder.mkdir()
    seen, closed = tools_python(
        cluster,
        """
        import json
        from dask.distributed import Client
        from dctoolkit.client.dask import DCTCluster

        cluster = DCTCluster(cores=1, memory="600MB", walltime="00:10:00", job_name="dask-test", death_timeout=60,
                             scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0"})
        script = cluster.job_script()
        cluster.scale(jobs=2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            squares = client.map(lambda x: x * x, range(10))
            total = client.submit(sum, squares).result(timeout=60)
            hosts = sorted(client.run(lambda: __import__("os").environ.get("DCT_JOB_ID")).values())
        ids = sorted(job.job_id for job in cluster.workers.values())
        print(json.dumps({"total": total, "ids": ids, "hosts": hosts, "script": script}), flush=True)
        cluster.close()
        print(json.dumps({"closed": True}))
        """,
        folder,
    )
    assert seen["total"] == 285
    # Each worker runs in a job of its own: the ids dct printed are the DCT_JOB_IDs the workers see.
    assert seen["hosts"] == seen["ids"] and len(seen["ids"]) == 2, seen
    assert (
        "# submitted with: dct submit --script --parsable --cpus 1 --memory 573MB --time 600s --name dask-test"
        in seen["script"]
    )
    assert closed == {"closed": True}
    for job_id in seen["ids"]:
        job = cluster.wait_job(int(job_id), timeout=30)
        assert job["state"] == "cancelled" and job["name"] == "dask-test", job
        assert job["request_cpus"] == 1 and job["request_memory_mb"] == 573


def test_submitit_runs_a_function_and_returns_its_value(cluster, workroot):
    folder = workroot / "submitit"
    folder.mkdir()
    seen, failed = tools_python(
        cluster,
        f"""
        import json, os, time
        import submitit

        def where(x):
            return {{"square": x * x, "job": os.environ["DCT_JOB_ID"], "env": submitit.JobEnvironment().job_id}}

        def boom():
            raise ValueError("bad input")

        executor = submitit.AutoExecutor(folder="{folder}/%j", cluster="dctoolkit")
        executor.update_parameters(cpus_per_task=1, mem_gb=0.5, timeout_min=5, name="subm")
        job = executor.submit(where, 12)
        value = job.result()
        # The state submitit's watcher reads from `dct status` (one call for all its jobs), once the job has ended.
        deadline = time.monotonic() + 60
        while job.watcher.get_state(job.job_id, mode="force") != "COMPLETED" and time.monotonic() < deadline:
            time.sleep(0.5)
        print(json.dumps({{"id": job.job_id, "value": value, "state": job.state}}))
        failing = executor.submit(boom)
        try:
            failing.result()
            print(json.dumps({{"raised": None}}))
        except Exception as exc:
            print(json.dumps({{"raised": str(exc), "id": failing.job_id}}))
        """,
        folder,
    )
    assert seen["value"] == {"square": 144, "job": seen["id"], "env": seen["id"]}, seen
    assert seen["state"] == "COMPLETED"  # dct status's `succeeded`, in submitit's (Slurm's) word
    job = cluster.wait_job(int(seen["id"]))
    assert job["state"] == "succeeded" and job["name"] == "subm" and job["request_memory_mb"] == 512
    assert "ValueError: bad input" in failed["raised"], failed
    assert cluster.wait_job(int(failed["id"]))["state"] == "failed"
