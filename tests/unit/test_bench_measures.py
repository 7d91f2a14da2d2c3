"""The bench's pure parts: reading CPU time from /proc, and naming and choosing the PostgreSQL run."""

import os
import subprocess
import sys

import pytest

from bench import cpu, postgres
from bench.run import RESULT_NAMES, Only

# A real /proc/PID/stat line shape, with a command name holding a space and a parenthesis.
STAT = "4242 (celery (w) x) S 1 4242 4242 0 -1 4194560 5123 0 0 0 731 96 0 0 20 0 3 0 12345 0 0"


def test_stat_ticks_adds_utime_and_stime_counted_from_the_last_parenthesis():
    assert cpu.stat_ticks(STAT) == 731 + 96


def test_cpu_seconds_reads_this_process_and_skips_one_that_is_gone():
    sum(i * i for i in range(200_000))  # some CPU of our own
    seconds = cpu.cpu_seconds([os.getpid(), 2**22 + 12345])
    assert list(seconds) == [os.getpid()]
    assert seconds[os.getpid()] == pytest.approx(sum(os.times()[:2]), abs=0.05)


def test_spent_counts_new_processes_from_zero_and_counts_the_vanished():
    result = cpu.spent({1: 1.0, 2: 5.0}, {1: 1.5, 3: 0.25})
    assert result.seconds == pytest.approx(0.75)
    assert (result.processes, result.vanished) == (2, 1)


def test_renamed_puts_the_engine_before_a_percentile_and_after_anything_else():
    assert postgres.renamed("throughput") == "throughput_postgres"
    assert postgres.renamed("server_cpu_per_job") == "server_cpu_per_job_postgres"
    assert postgres.renamed("latency_p99") == "latency_postgres_p99"
    assert postgres.renamed("schedule_pass_100k") == "schedule_pass_postgres_100k"
    assert set(postgres.POSTGRES_NAMES) <= set(RESULT_NAMES)


def test_choose_probes_only_for_auto():
    asked = []

    def answers(url):
        asked.append(url)
        return True

    assert postgres.choose("none", answers) == "" and asked == []
    url = "postgresql://me@db.example:5433/postgres"
    assert postgres.choose(url, answers) == url and asked == []
    assert postgres.choose("auto", answers) == postgres.LOCAL_URL and asked == [postgres.LOCAL_URL]
    assert postgres.choose("auto", lambda _: False) == ""


def test_choose_refuses_what_is_not_a_postgres_url():
    with pytest.raises(SystemExit, match="mysql://root@h/db: not a PostgreSQL URL"):
        postgres.choose("mysql://root@h/db", lambda _: True)


@pytest.mark.parametrize(
    "only, expected",
    [
        ("", "throughput,latency,many_nodes,schedule_pass_100k"),
        ("schedule_pass_postgres", "schedule_pass_100k"),
        ("schedule_pass_100k", ""),
        ("throughput,latency", "throughput,latency"),
        ("many_nodes", "many_nodes"),
        ("many_nodes_throughput_postgres", "many_nodes"),
        ("latency", "latency"),
        ("server_cpu_per_job", "throughput"),
        ("throughput_postgres", "throughput"),
        ("latency_postgres_p50", "latency"),
        ("latency_p50", ""),
        ("submit_100k", ""),
    ],
)
def test_child_only_asks_for_the_scenarios_behind_the_renamed_rows(only, expected):
    assert postgres.child_only(Only.parse(only)) == expected


def test_statements_tally_counts_one_databases_statements_by_shape():
    from bench.statements import tally

    log = [
        "2026-12-02 17:00:00.001 UTC [11] postgres@dct_bench_a LOG:  duration: 0.050 ms  statement: BEGIN",
        "2026-12-02 17:00:00.002 UTC [11] postgres@dct_bench_a LOG:  duration: 0.200 ms  execute <unnamed>: "
        'UPDATE "jobs_job" SET "state" = $1 WHERE "id" IN (1, 2, 3)',
        "2026-12-02 17:00:00.003 UTC [12] postgres@dct_bench_a LOG:  duration: 0.300 ms  execute <unnamed>: "
        'UPDATE "jobs_job" SET "state" = $1 WHERE "id" IN (4, 5)',
        "2026-12-02 17:00:00.004 UTC [13] postgres@other LOG:  duration: 9.000 ms  statement: BEGIN",
        "2026-12-02 17:00:00.005 UTC [11] postgres@dct_bench_a LOG:  duration: 1.000 ms  statement: "
        'CREATE TABLE "x" ("id" bigint)',
        "2026-12-02 17:00:00.006 UTC [11] postgres@dct_bench_a LOG:  checkpoint starting: time",
    ]
    counts, millis = tally(log, "dct_bench_a")
    update = 'UPDATE "jobs_job" SET "state" = ? WHERE "id" IN (?, ...)'
    assert counts == {"BEGIN": 1, update: 2}
    assert millis[update] == pytest.approx(0.5)


def test_stat_ticks_with_children_adds_the_reaped_childrens_cutime_and_cstime():
    assert cpu.stat_ticks_with_children(STAT.replace(" 731 96 0 0 ", " 731 96 40 2 ")) == 731 + 96 + 40 + 2


def test_tree_seconds_counts_a_child_that_has_ended_and_been_waited_for():
    """A job's CPU is in its node's tree after the job is gone: its parent's cutime holds it once reaped."""
    before = cpu.tree_seconds(os.getpid())
    own = sum(os.times()[:2])
    child = subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert child.returncode == 0
    spent_by_child = cpu.tree_seconds(os.getpid()) - before - (sum(os.times()[:2]) - own)
    assert spent_by_child > 0.05, "the child's CPU (cutime) is counted after it was reaped"
    assert cpu.tree_seconds(2**22 + 12345) == 0.0
