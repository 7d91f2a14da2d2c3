"""Crashes lose no job and run none twice for one attempt."""

import pytest

from tests.support.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engine]


def test_job_on_a_killed_node_completes_on_another_node_once(fresh_cluster, tmp_path):
    c = fresh_cluster
    c.start_node("node-1", slots=1)
    script = "#!/bin/sh\necho start $DCT_ATTEMPT >> /tmp/ignored\nsleep 3\necho finished attempt $DCT_ATTEMPT\n"
    (job,) = c.submit(tmp_path, "executable = slow.sh\n", {"slow.sh": script})
    running = c.wait_job(job["id"], states=("running",), timeout=30)
    assert running["node"] == "node-1" and running["attempts"] == 1
    c.kill_node("node-1")
    c.start_node("node-2", slots=1)
    # node-1 goes silent; after DCT_NODE_TIMEOUT_SECONDS it is offline and the job is requeued.
    wait_until(lambda: c.node("node-1", state_in=("offline",)), 30, "node-1 to be offline")
    done = c.wait_job(job["id"], timeout=60)
    assert done["state"] == "succeeded", done
    assert done["node"] == "node-2" and done["attempts"] == 2
    assert c.cli("logs", str(job["id"])).stdout == "finished attempt 2\n"


def test_a_job_fails_with_node_lost_after_max_attempts(tmp_path):
    from tests.support.cluster import Cluster

    with Cluster(tmp_path / "c", extra_env={"DCT_MAX_ATTEMPTS": "1"}) as c:
        c.start_node("node-1", slots=1)
        (job,) = c.submit(tmp_path / "sub", "executable = s.sh\n", {"s.sh": "#!/bin/sh\nsleep 30\n"})
        c.wait_job(job["id"], states=("running",), timeout=30)
        c.kill_node("node-1")
        done = c.wait_job(job["id"], timeout=30)
        assert done["state"] == "failed"
        assert done["reason"] == "node lost (after 1 attempts)"
