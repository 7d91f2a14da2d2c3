"""`priority = N` through the real queueing, reading and scheduling code on the test database: a user's jobs
are read and started higher priority first, a user's place numbers agree with that order, and `edit`
changes it.  Sending is replaced by a list (Redis is the integration tests' business)."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job
from dctoolkit.jobs.scheduling import dispatch
from dctoolkit.jobs.scheduling.queues import read_heads
from dctoolkit.jobs.scheduling.waiting import ahead_own, queue_order, waiting_page
from dctoolkit.nodes.models import Node, NodeState


@pytest.fixture
def alice(db, settings, tmp_path):
    settings.DCT_STORAGE = tmp_path / "storage"
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    return get_user_model().objects.create_user("alice")


def submit_text(owner, tmp_path, text):
    return submit(f"executable = run.sh\n{text}", "job.sub", owner, FolderFiles(tmp_path))


def test_a_users_jobs_are_read_and_started_higher_priority_first(alice, tmp_path, sent):
    low = submit_text(alice, tmp_path, "priority = -1\nqueue 2\n")
    plain = submit_text(alice, tmp_path, "queue 2\n")
    urgent = submit_text(alice, tmp_path, "priority = 5\nqueue 2\n")
    order = [j.id for j in (*urgent, *plain, *low)]
    assert [j.id for j in read_heads({alice.id: 6})[alice.id]] == order
    # Read a page at a time, each page continues where the last stopped.
    first = read_heads({alice.id: 3})[alice.id]
    rest = read_heads({alice.id: 3}, {alice.id: (first[-1].priority, first[-1].id)})[alice.id]
    assert [j.id for j in first + rest] == order
    # Their places agree: the waiting list and each job's count of the user's jobs before it.
    jobs = list(Job.objects.filter(owner=alice))
    ahead = ahead_own(jobs)
    assert sorted(order, key=ahead.get) == order
    page = waiting_page(Job.objects.all(), queue_order(timezone.now()), alice.id, 1)
    assert [j.id for j in page.jobs] == order and [page.positions[i] for i in order] == [1, 2, 3, 4, 5, 6]

    Node.objects.create(name="node-1", state=NodeState.ONLINE, slots=2, cpus=2, threads=2, memory_total_mb=4096,
                        memory_available_mb=4096, sandbox=True, last_heartbeat=timezone.now())  # fmt: skip
    assert dispatch.schedule_pass(timezone.now()) == 2
    assert sorted(job_id for job_id, *_ in sent) == sorted(j.id for j in urgent)


def test_edit_changes_a_jobs_priority(alice, tmp_path):
    first, second = submit_text(alice, tmp_path, "queue 2\n")
    call_command("edit", str(second.id), "priority=3", "--user", "alice", stdout=io.StringIO())
    assert [j.id for j in read_heads({alice.id: 2})[alice.id]] == [second.id, first.id]
