"""The node's start commits without waiting for its WAL flush on PostgreSQL; its end, and everything after
the start on that connection, with the server's own synchronous_commit (tasks.unflushed_commit)."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.nodes.worker import tasks
from tests.db.conftest import online_node

pytestmark = pytest.mark.usefixtures("no_scheduler")


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_only_the_start_commits_unflushed_and_the_setting_is_back_after_it(db, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL setting")
    node = online_node()
    owner = get_user_model().objects.create_user("alice")
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    job = Job.objects.create(submission=sub, owner=owner, name="t", executable="t.sh", submitted_at=timezone.now())
    attempt = transitions.claim(job.id, node.id, [], timezone.now())
    before = synchronous_commit()
    seen = []
    start_and_read = transitions.start_and_read

    def watched(*args, **kwargs):
        seen.append(synchronous_commit())
        return start_and_read(*args, **kwargs)

    monkeypatch.setattr(transitions, "start_and_read", watched)
    row = tasks._start(job.id, attempt, node.name, timezone.now(), (0,))
    assert row is not None and row.state == JobState.RUNNING
    assert seen == ["off"], "the start's own commit does not wait for the disk"
    assert synchronous_commit() == before == "on", "what follows on the connection (the end) is durable"


def test_elsewhere_nothing_is_sent(db):
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL only changes it")
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as statements, tasks.unflushed_commit():
        pass
    assert not statements.captured_queries
