"""Operations end to end: a real scheduler and node, gunicorn serving /metrics, retention by the scheduler itself."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import Cluster, wait_until
from tests.support.web import start_web

pytestmark = [pytest.mark.integration, pytest.mark.engine]

TOKEN = "integration-metrics-token"


@pytest.fixture(scope="module")
def ops_cluster(tmp_path_factory):
    env = {"DCT_METRICS_TOKEN": TOKEN, "DCT_RETENTION": "3s"}
    with Cluster(tmp_path_factory.mktemp("cluster"), extra_env=env) as c:
        c.start_nodes({"node-1": 1})
        yield c


def scrape(url: str) -> dict:
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_scheduler_publishes_its_passes_and_purges_old_files_by_itself(ops_cluster, tmp_path):
    url = start_web(ops_cluster)
    (job,) = ops_cluster.submit(tmp_path, "executable = hello.py\n", {"hello.py": "print('hi')\n"})
    done = ops_cluster.wait_job(job["id"])
    assert done["state"] == "succeeded", done

    def placed() -> dict | None:
        got = scrape(url)
        return got if got.get(("dct_scheduler_placements_total", ()), 0) >= 1 else None

    got = wait_until(placed, 30, "the scheduler's placements in /metrics", interval=0.5)
    assert got[("dct_scheduler_pass_seconds_count", ())] >= 1
    assert got[("dct_jobs", (("state", "succeeded"), ("user", "alice")))] == 1
    assert got[("dct_nodes", (("state", "online"),))] == 1
    assert got[("dct_node_cpus", (("node", "node-1"), ("use", "free")))] == 1
    assert got[("dct_job_run_seconds_count", ())] == 1

    # DCT_RETENTION=3s: the scheduler removes the job's files soon after; its record stays.
    wait_until(
        lambda: ops_cluster.cli("logs", str(job["id"]), check=False).stdout.strip() == "",
        60, "the scheduler to purge the job's files", interval=0.5,
    )  # fmt: skip
    assert ops_cluster.job(job["id"])["state"] == "succeeded"
    logs = "".join(p.read_text() for p in ops_cluster.logs.glob("scheduler*.log"))
    assert "retention: removed the files of 1 jobs" in logs
