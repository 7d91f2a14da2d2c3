"""Several hosts for real: node workers in their own network namespaces reach Redis and
PostgreSQL over their own links; cutting one link moves its job to another host, once."""

import pytest

from dctoolkit.dev.stack import redis_url
from tests.support.cluster import Cluster, free_port, postgres_url, via, wait_until
from tests.support.netns import Host, namespaces_available, start_forwarder

pytestmark = [pytest.mark.integration, pytest.mark.engine]


@pytest.fixture
def hosts():
    why = namespaces_available()
    if why:
        pytest.skip(f"SKIPPED: network namespaces cannot be made here ({why}); the multi-host test did not run")
    made = [Host(1), Host(2)]
    try:
        for h in made:
            h.create()
        yield made
    finally:
        for h in made:
            h.destroy()


def test_cutting_a_hosts_link_moves_its_job_to_another_host_once(hosts, tmp_path, monkeypatch):
    pg = postgres_url()
    if not pg:
        pytest.skip("SKIPPED: the multi-host test needs PostgreSQL on 127.0.0.1:5432 (a database over the network)")
    monkeypatch.setenv("DCT_TEST_DATABASE_URL", pg)
    c = Cluster(tmp_path / "c").start()
    forwarders = []
    try:
        listen = [h.server_ip for h in hosts]
        redis_port, pg_port = free_port(), free_port()
        forwarders.append(start_forwarder(listen, redis_port, c.redis.port))
        forwarders.append(start_forwarder(listen, pg_port, 5432))
        trace = tmp_path / "shared"  # a folder both hosts' jobs may write: the jobs' own record of what ran
        trace.mkdir()
        for h in hosts:
            env = {
                "REDIS_URL": redis_url(redis_port, c.redis.password, host=h.server_ip),
                "DATABASE_URL": via(c.db.url, h.server_ip, pg_port),
                "DCT_SANDBOX_PATHS": f"{trace}:rw",
            }
            c.start_node(f"host-{h.index}", slots=1, env=env, wrap=h.command)
        c.cli("drain", "host-2")
        script = (
            f"#!/bin/sh\necho start $DCT_ATTEMPT >> {trace}/log\nsleep 25\n"
            f"echo end $DCT_ATTEMPT >> {trace}/log\necho finished attempt $DCT_ATTEMPT\n"
        )
        (job,) = c.submit(tmp_path / "s", "executable = m.sh\n", {"m.sh": script})
        first = c.wait_job(job["id"], states=("running",), timeout=30)
        assert first["node"] == "host-1"
        c.cli("resume", "host-2")
        hosts[0].cut()
        wait_until(lambda: c.node("host-1", state_in=("offline",)), 30, "host-1 to go offline")
        done = c.wait_job(job["id"], timeout=60)
        assert done["state"] == "succeeded" and done["node"] == "host-2" and done["attempts"] == 2, done
        # host-1 fenced itself: attempt 1 never ran to its end beside attempt 2.
        assert (trace / "log").read_text().split("\n") == ["start 1", "start 2", "end 2", ""]
        assert c.cli("logs", str(job["id"])).stdout == "finished attempt 2\n"
    finally:
        for f in forwarders:
            f.kill()
        c.stop()
