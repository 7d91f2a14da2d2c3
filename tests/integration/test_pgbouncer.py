"""Behind PgBouncer in transaction mode, as a big fleet on PostgreSQL runs (README, "Database connections").

Every process of the cluster (scheduler, node workers, the reader, the CLI)
reaches PostgreSQL through a real PgBouncer whose pool is smaller than the
connections they hold, so one server connection serves many clients, one
transaction at a time.  With DCT_DB_PREPARE=0 (Debian's PgBouncer 1.18 keeps
no prepared statement across transactions) every job runs once and a running
job can be cancelled.
"""

from __future__ import annotations

import threading

import pytest

from tests.support import bouncer
from tests.support.cluster import Cluster, postgres_url

pytestmark = [pytest.mark.integration]

POOL_SIZE = 3  # server connections: fewer than the 2 nodes' 8 (a connection a slot, two more each) and the rest


@pytest.fixture
def pooled(tmp_path, monkeypatch):
    """A cluster whose every process reaches PostgreSQL through PgBouncer; yields (cluster, PgBouncer)."""
    pg = postgres_url()
    if not pg:
        pytest.skip("SKIPPED: the PgBouncer test needs PostgreSQL on 127.0.0.1:5432")
    if not bouncer.binary():
        pytest.fail("pgbouncer is not installed (.ci/run installs Debian's)")
    monkeypatch.setenv("DCT_TEST_DATABASE_URL", pg)
    pool = bouncer.PgBouncer(pg, POOL_SIZE).start()
    c = Cluster(tmp_path / "c", extra_env={"DCT_DB_PREPARE": "0"})
    c.env["DATABASE_URL"] = pool.url(c.db.url)  # the reader's too: it holds this very dict
    try:
        c.start()
        yield c, pool
    finally:
        c.stop()
        pool.stop()


def test_jobs_run_once_and_cancel_through_a_pool_smaller_than_the_clients(pooled, tmp_path):
    c, pool = pooled
    c.start_nodes({"node-1": 2, "node-2": 2})
    seen: list[dict[str, int]] = []
    stop = threading.Event()

    def watch() -> None:  # the pool's counts while the jobs run
        while not stop.wait(0.2):
            seen.append(pool.pools(c.db.name))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        jobs = c.submit(tmp_path / "s", "executable = j.sh\nqueue = 24\n", {"j.sh": "#!/bin/sh\nsleep 0.3\necho $1\n"})
        done = [c.wait_job(job["id"], timeout=120) for job in jobs]
    finally:
        stop.set()
        watcher.join()
    assert [(j["state"], j["attempts"]) for j in done] == [("succeeded", 1)] * 24, done
    assert {j["node"] for j in done} == {"node-1", "node-2"}
    assert seen, "PgBouncer's counts were never read"
    assert max(s["servers"] for s in seen) <= POOL_SIZE, seen
    assert max(s["clients"] for s in seen) > POOL_SIZE, f"no more clients than server connections: {seen}"

    (long,) = c.submit(tmp_path / "l", "executable = l.sh\n", {"l.sh": "#!/bin/sh\nsleep 120\n"})
    c.wait_job(long["id"], states=("running",), timeout=60)
    c.cli("cancel", str(long["id"]))
    stopped = c.wait_job(long["id"], timeout=30)
    assert stopped["state"] == "cancelled", stopped
