"""The cores a job is pinned to: recorded by the node's start write, in the job object, gone on a retry."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.scheduling.snapshot import Capacity
from dctoolkit.jobs.web.serializers import job_dict, node_dict
from dctoolkit.nodes.models import Node
from dctoolkit.nodes.worker import runner, tasks
from tests.db.conftest import online_node

pytestmark = pytest.mark.usefixtures("no_scheduler")


@pytest.fixture
def node(db):
    return online_node()


def make(**keys) -> Job:
    owner = get_user_model().objects.create_user("alice")
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    return Job.objects.create(submission=sub, owner=owner, name="t", executable="t.sh", submitted_at=timezone.now(),
                              **keys)  # fmt: skip


def test_the_start_write_records_the_cores_and_a_retry_forgets_them(node):
    job = make(request_cpus=2, max_retries=1)
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    assert transitions.start(job.id, attempt, node.name, timezone.now(), (1, 3))
    row = Job.objects.select_related("owner", "node").get(id=job.id)
    assert job_dict(row, timezone.now())["cpu_indices"] == [1, 3]
    result = runner.RunResult(exit_code=1, wall_seconds=1.0, cpu_seconds=1.0, max_rss_mb=1.0)
    assert tasks.record(row, attempt, result, [], sandboxed=True) == JobState.QUEUED
    assert Job.objects.get(id=job.id).cpu_indices == [], "queued again: no cores until it starts again"


def test_the_node_object_says_how_it_enforces(node):
    shape = node_dict(node, Capacity(), timezone.now())
    assert shape["enforcement"] == {"cpus": "affinity", "memory": "watch", "pids": None}, "nothing reported yet"
    Node.objects.filter(id=node.id).update(enforcement={"cpus": "cgroup", "memory": "cgroup", "pids": "cgroup"})
    node.refresh_from_db()
    assert node_dict(node, Capacity(), timezone.now())["enforcement"] == {
        "cpus": "cgroup", "memory": "cgroup", "pids": "cgroup"
    }  # fmt: skip


def test_the_heartbeat_reports_the_enforcement_the_worker_has(node, monkeypatch):
    from dctoolkit.nodes.worker import agent, cgroups

    monkeypatch.setattr(cgroups, "_node", {"node-1": cgroups.NodeCgroups(1, {}, cpu=True)})
    agent.beat(agent.NodeIdentity(name="node-1", slots=4, sandbox=True))
    node.refresh_from_db()
    assert node.enforcement == {"cpus": "cgroup", "memory": "cgroup", "pids": "cgroup"}
    monkeypatch.setattr(cgroups, "_node", {"node-1": None})
    agent.beat(agent.NodeIdentity(name="node-1", slots=4, sandbox=True))
    node.refresh_from_db()
    assert node.enforcement == {"cpus": "affinity", "memory": "watch", "pids": None}
