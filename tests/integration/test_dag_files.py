"""A DAG file (DAGMan's language) run end to end: the CLI, the scheduler's engine, real node workers.

One cluster for the module (the conftest's: two nodes of one slot each).
"""

import json

import pytest

from tests.support.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engine]

DAG = """\
# a diamond: A, then B and C, then D; C fails once and is retried; F runs last
JOB A a.sub
JOB B b.sub
JOB C c.sub
JOB D a.sub
FINAL F a.sub
PARENT A CHILD B C
PARENT B C CHILD D
RETRY C 2
VARS B word="hello world"
SCRIPT POST D post.sh $JOB $RETURN
DOT pipeline.dot
"""
FILES = {
    "a.sub": "executable = ok.sh\narguments = $(JOB)\nqueue\n",
    "b.sub": "executable = ok.sh\narguments = \"'$(word)'\"\nqueue\n",
    "c.sub": "executable = flaky.sh\narguments = $(RETRY)\nqueue\n",
    "ok.sh": '#!/bin/sh\necho "ran $1"\n',
    "flaky.sh": '#!/bin/sh\n[ "$1" -ge 1 ] || exit 4\necho recovered\n',
    "post.sh": '#!/bin/sh\necho "post $1 $2"\n',
}


def test_a_diamond_runs_in_order_retries_a_failed_node_and_ends_with_its_final_node(cluster, tmp_path):
    folder = tmp_path / "pipeline"
    folder.mkdir()
    for name, text in {**FILES, "pipeline.dag": DAG}.items():
        (folder / name).write_text(text)
        if name.endswith(".sh"):
            (folder / name).chmod(0o755)
    done = cluster.cli("submit", "pipeline.dag", "--json", cwd=folder)
    assert "pipeline.dag:12: note: DOT accepted and not used" in done.stderr
    answer = json.loads(done.stdout)
    dag_id = answer["dag"]
    assert [(j["dag"], j["dag_node"]) for j in answer["jobs"]] == [(dag_id, "A")]

    shown = wait_until(
        lambda: (d := cluster.json("dag", str(dag_id)))["state"] != "running" and d, 150, f"dag {dag_id} to end"
    )
    assert shown["state"] == "succeeded", shown
    nodes = {n["name"]: n for n in shown["nodes"]}
    assert {name: n["state"] for name, n in nodes.items()} == dict.fromkeys("ABCDF", "succeeded")
    assert nodes["D"]["parents"] == ["B", "C"]
    jobs = {job_id: cluster.job(job_id) for n in nodes.values() for job_id in n["jobs"]}

    first_c, second_c = (jobs[i] for i in nodes["C"]["jobs"])
    assert (first_c["state"], first_c["exit_code"]) == ("failed", 4), "RETRY C 2: $(RETRY) 0 fails"
    assert second_c["state"] == "succeeded" and nodes["C"]["retries"] == 1

    def started(name: str) -> str:
        return jobs[nodes[name]["jobs"][0]]["started_at"]

    def finished(name: str) -> str:
        return jobs[nodes[name]["jobs"][-1]]["finished_at"]

    assert started("B") >= finished("A") and started("C") >= finished("A")
    assert started("D") >= max(finished("B"), finished("C"))
    assert started("F") >= finished("D"), "the FINAL node runs last (after D's POST script)"

    d_job, d_post = nodes["D"]["jobs"]
    assert jobs[d_job]["arguments"] == ["D"] and jobs[d_post]["name"] == "D.post"
    assert cluster.cli("logs", str(nodes["B"]["jobs"][0])).stdout == "ran hello world\n", "VARS as macros"
    assert cluster.cli("logs", str(d_post)).stdout == "post D 0\n", "the POST script got $JOB $RETURN"
    assert all(jobs[i]["dag_node"] == name for name, n in nodes.items() for i in n["jobs"])


# Engines racing on one DAG: this module's scheduler and three more processes run the DAG step at once,
# while a fourth ends its (held, so that no node runs them) jobs, failing some at random.
ENGINE = """
import django, random, sys, time
django.setup()
from django.db import OperationalError
from django.utils import timezone
from dctoolkit.jobs.models import Dag, Job, JobState
from dctoolkit.jobs.scheduling import dagman
role, dag_id = sys.argv[1], int(sys.argv[2])
rng = random.Random(int(sys.argv[3]))
end = time.monotonic() + 60
while time.monotonic() < end and Dag.objects.filter(id=dag_id, state="running").exists():
    try:
        if role == "finisher":
            held = Job.objects.filter(dag_id=dag_id, state=JobState.HELD)
            for job_id, node_id, name in held.values_list("id", "dag_node_id", "name")[:4]:
                # m0 and m1 always fail their first run (a retry is sure to race); others now and then.
                first = not Job.objects.filter(dag_node_id=node_id, state=JobState.FAILED).exists()
                code = 1 if (name in ("m0", "m1") and first) or rng.random() < 0.3 else 0
                Job.objects.filter(id=job_id, state=JobState.HELD).update(
                    state=JobState.FAILED if code else JobState.SUCCEEDED, exit_code=code,
                    finished_at=timezone.now())
            time.sleep(0.02)
        else:
            dagman.advance_dags(timezone.now())
    except OperationalError as exc:  # SQLite busy past its timeout: try again
        print("retry:", exc, file=sys.stderr)
"""


def test_engines_racing_on_one_dag_never_queue_a_phase_twice(cluster, tmp_path):
    import subprocess
    import sys

    from tests.support.cluster import ROOT

    folder = tmp_path / "race"
    folder.mkdir()
    middle = [f"m{i}" for i in range(10)]
    lines = ["JOB root n.sub", *(f"JOB {m} n.sub" for m in middle), "JOB gather n.sub", "FINAL last n.sub"]
    lines += [f"PARENT root CHILD {' '.join(middle)}", f"PARENT {' '.join(middle)} CHILD gather", "RETRY ALL_NODES 2"]
    (folder / "race.dag").write_text("\n".join(lines) + "\n")
    (folder / "n.sub").write_text("executable = ok.sh\nhold = true\nqueue\n")
    (folder / "ok.sh").write_text("#!/bin/sh\n")
    (folder / "ok.sh").chmod(0o755)
    dag_id = json.loads(cluster.cli("submit", "race.dag", "--json", cwd=folder).stdout)["dag"]
    env = {**cluster.env, "DJANGO_SETTINGS_MODULE": "dctoolkit.settings"}
    roles = [("engine", 1), ("engine", 2), ("engine", 3), ("finisher", 4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ENGINE, role, str(dag_id), str(seed)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role, seed in roles
    ]
    for proc in procs:
        assert proc.wait(90) == 0, proc.stderr.read()
    shown = wait_until(
        lambda: (d := cluster.json("dag", str(dag_id)))["state"] != "running" and d, 60, f"dag {dag_id} to end"
    )
    for node in shown["nodes"]:
        jobs = [cluster.job(i) for i in node["jobs"]]
        states = [j["state"] for j in jobs]
        if node["state"] == "cancelled":  # below a node that failed three times: it never ran
            assert jobs == [] and "this node never runs" in node["reason"], node
            continue
        assert len(jobs) == node["retries"] + 1 <= 3, f"one job per run of node {node['name']}: {node}"
        assert states[:-1] == ["failed"] * node["retries"], f"a node runs again only after a failure: {node}"
        most = 0 if node["is_final"] else 2  # RETRY ALL_NODES leaves out the FINAL node, as DAGMan does
        assert states[-1] == node["state"] and (node["state"] == "succeeded" or node["retries"] == most), node
    ok = all(n["state"] == "succeeded" for n in shown["nodes"] if not n["is_final"])
    final = shown["nodes"][-1]
    assert final["name"] == "last" and final["state"] in ("succeeded", "failed") and final["jobs"]
    assert shown["state"] == final["state"], "the FINAL node's outcome is the DAG's"
    assert ok or any(n["state"] == "failed" for n in shown["nodes"])
    assert all(n["retries"] >= 1 for n in shown["nodes"] if n["name"] in ("m0", "m1")), "retries raced"
