"""`./dct bench --quick --json` runs every scenario on its own stack and prints one well-formed document.

When a PostgreSQL server answers on 127.0.0.1:5432 (asked here, independently
of the bench), the live scenarios run again there and their rows are expected
too, from a database the bench made and dropped.

No timing is asserted: these machines are shared and noisy.  What is
asserted is that every scenario ran against a baseline measured in the
same run, and that the command leaves nothing behind.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# The quick bench runs every scenario (two fleets of node workers, the PostgreSQL rerun): minutes on a busy
# two-core machine, more than the suite's 300 s a test; the first test's setup pays for it.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
NAMES = [
    "throughput",
    "server_cpu_per_job",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "sandbox_overhead",
    "metrics_scrape_throughput",
    "node_rss_mb",
    "many_nodes_heartbeat_cost",
    "many_nodes_throughput",
    "many_nodes_node_rss_mb",
    "submit_100k",
    "cancel_10k",
    "schedule_pass_10k",
    "schedule_pass_100k",
    "schedule_pass_1m",
    "schedule_pass_per_placement",
    "scheduler_rss_1m",
    "schedule_pass_waiting",
    "schedule_pass_requirements",
    "history_page_1m",
    "cli_status",
    "cli_job",
    "cli_submit",
]

POSTGRES_NAMES = [
    "throughput_postgres",
    "server_cpu_per_job_postgres",
    "latency_postgres_p50",
    "latency_postgres_p95",
    "latency_postgres_p99",
    "many_nodes_heartbeat_cost_postgres",
    "many_nodes_throughput_postgres",
    "many_nodes_node_rss_mb_postgres",
    "schedule_pass_postgres_100k",
]
LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def local_postgres() -> bool:
    import psycopg

    try:
        with psycopg.connect(LOCAL_POSTGRES, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def expected_names(postgres: bool) -> list[str]:
    at = NAMES.index("submit_100k")
    return NAMES[:at] + (POSTGRES_NAMES if postgres else []) + NAMES[at:]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    # The bench makes its own Redis, database and storage; point ours somewhere
    # harmless to prove it does not use them.
    var = tmp_path_factory.mktemp("caller-var")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCT_", "DATABASE_URL", "REDIS_URL"))}
    env.update(DCT_VAR=str(var), DATABASE_URL=f"sqlite:///{var / 'mine.sqlite3'}", SECRET_KEY="tests-only")
    done = subprocess.run(
        [sys.executable, "manage.py", "bench", "--quick", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1100,
    )  # fmt: skip
    assert done.returncode == 0, f"bench exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done, var


def test_quick_json_is_one_document_with_every_result(bench_run):
    done, _ = bench_run
    document = json.loads(done.stdout)  # exactly one document, nothing else on stdout
    assert set(document) == {"machine", "results"}
    assert [r["name"] for r in document["results"]] == expected_names(local_postgres())


def test_the_postgres_rows_ran_on_postgresql_in_a_database_that_is_gone(bench_run):
    if not local_postgres():
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432")
    import psycopg

    done, _ = bench_run
    machine = json.loads(done.stdout)["machine"]
    assert machine["database"].startswith("SQLite") and machine["postgres"].startswith("PostgreSQL"), machine
    (name,) = re.findall(r"in the throwaway database \S+/(dct_bench_[0-9a-f]+)", done.stderr)
    with psycopg.connect(LOCAL_POSTGRES) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone() == (0,)


def test_every_result_has_a_baseline_from_the_same_run_and_its_ratio(bench_run):
    results = json.loads(bench_run[0].stdout)["results"]
    for r in results:
        assert {"name", "value", "unit", "baseline", "baseline_value", "ratio"} <= set(r), r
        assert isinstance(r["value"], float | int) and math.isfinite(r["value"]) and r["value"] > 0, r
        assert isinstance(r["baseline_value"], float | int) and r["baseline_value"] > 0, r
        assert r["unit"] and r["baseline"], r
        assert r["ratio"] == pytest.approx(r["value"] / r["baseline_value"], rel=0.01, abs=0.002), r


def test_machine_says_what_ran_it(bench_run):
    machine = json.loads(bench_run[0].stdout)["machine"]
    assert machine["cores"] >= 1 and machine["memory_mb"] > 0
    assert machine["python"].count(".") == 2 and machine["redis"]
    assert machine["quick"] is True


def test_the_callers_database_is_left_alone(bench_run):
    _, var = bench_run
    assert not (var / "mine.sqlite3").exists()


def test_progress_goes_to_stderr(bench_run):
    assert "bench: throughput" in bench_run[0].stderr


def test_the_metrics_row_was_scraped_during_its_batch(bench_run):
    (row,) = [r for r in json.loads(bench_run[0].stdout)["results"] if r["name"] == "metrics_scrape_throughput"]
    scrapes = int(re.match(r"(\d+) scrapes", row["note"]).group(1))
    assert scrapes >= 1, row
