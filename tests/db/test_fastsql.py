"""fastsql against Django's test database: the written-out statements behave as the ORM's."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection, connections
from django.utils import timezone

from dctoolkit.accounts.models import DailyUsage
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.lib.fastsql import Add, Compiled, CompiledIn, retry_if_gone, reuse_connection, update_rows


@pytest.fixture
def job(db):
    owner = get_user_model().objects.create_user("alice")
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    return Job.objects.create(submission=sub, owner=owner, name="t", executable="t.sh", submitted_at=timezone.now())


def test_update_rows_changes_only_matching_rows_and_adapts_each_value_by_its_field(job):
    when = timezone.now() - timedelta(minutes=5)
    assert update_rows(Job, {"id": job.id, "state": JobState.RUNNING}, {"reason": "x"}) == 0, "state did not match"
    values = {"state": JobState.SUCCEEDED, "finished_at": when, "gpu_indices": [1, 3], "sandboxed": True}
    assert update_rows(Job, {"id": job.id, "state": JobState.QUEUED}, values) == 1
    job.refresh_from_db()
    assert (job.state, job.finished_at, job.gpu_indices, job.sandboxed) == (JobState.SUCCEEDED, when, [1, 3], True)


def test_add_adds_to_the_column(job):
    day = DailyUsage.objects.create(user_id=job.owner_id, day=timezone.now().date(), cpu_seconds=1.5, jobs=1)
    assert update_rows(DailyUsage, {"id": day.id}, {"cpu_seconds": Add(2.25), "jobs": Add(1)}) == 1
    day.refresh_from_db()
    assert (day.cpu_seconds, day.jobs) == (3.75, 2)


def test_compiled_takes_new_parameters_each_call_and_converts_fields(job):
    rows = Compiled(lambda: Job.objects.filter(id=0))
    assert rows.objects(job.id + 1000) == []
    (found,) = rows.objects(job.id)
    assert found.submitted_at == job.submitted_at and found.arguments == job.arguments
    with pytest.raises(ValueError, match="takes 1 parameters, not 2"):
        rows.objects(1, 2)


def test_compiled_values_converts_datetimes_and_objects_are_whole_instances(job):
    row = Compiled(lambda: Job.objects.filter(id=0).values_list("id", "submitted_at", "arguments"))
    assert row.values(job.id) == [(job.id, job.submitted_at, job.arguments)]
    (found,) = Compiled(lambda: Job.objects.filter(id=0)).objects(job.id)
    assert found.pk == job.pk and found.owner_id == job.owner_id and found.state == JobState.QUEUED
    found.reason = "saved through the ORM"
    found.save(update_fields=["reason"])  # a proper model instance: its state says it came from the database
    assert Job.objects.get(id=job.id).reason == "saved through the ORM"


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 9])
def test_compiled_in_finds_exactly_the_listed_rows_at_any_length(db, count):
    owner = get_user_model().objects.create_user("bob")
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=12)
    jobs = [
        Job.objects.create(submission=sub, owner=owner, name=f"j{i}", executable="t.sh", submitted_at=timezone.now())
        for i in range(12)
    ]
    wanted = [j.id for j in jobs[:count]]
    by_id = CompiledIn(lambda ids: Job.objects.filter(state=JobState.QUEUED, id__in=ids).values_list("id", "name"))
    assert sorted(by_id.values(wanted)) == [(j.id, j.name) for j in jobs[:count]]
    assert by_id.values([]) == []
    objects = CompiledIn(lambda ids: Job.objects.filter(id__in=ids))
    assert sorted(j.name for j in objects.objects(wanted)) == sorted(j.name for j in jobs[:count])


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _kill_kept_connection() -> int:
    """Terminate this connection's server process from another connection (a database restart, for it)."""
    pid = _backend_pid()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    return pid


@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_that_died_is_noticed_by_its_first_read_and_replaced():
    # What a node does at each job's start: no `SELECT 1` first; the read that finds the link dead is sent again.
    if connection.vendor != "postgresql":
        pytest.skip("only a server's connection can die under a kept one (SQLite has no link)")
    read = Compiled(lambda: Job.objects.values_list("id"))
    first = _kill_kept_connection()
    reuse_connection()
    with pytest.raises(OperationalError):  # no health check: the first statement is the one that fails
        read.rows()
    reuse_connection()  # an erred connection is closed, as close_old_connections does
    assert connection.connection is None
    assert read.rows() == []
    second = _kill_kept_connection()
    reuse_connection()
    assert retry_if_gone(read.rows) == [], "the read is sent again on a new connection"
    assert _backend_pid() not in (first, second)


def test_fastsqls_statements_are_prepared_on_postgresql_and_logged_with_their_values(job):
    from django.test.utils import CaptureQueriesContext

    from dctoolkit.lib import fastsql

    with CaptureQueriesContext(connection) as logged, fastsql.cursor() as cursor:
        cursor.execute("SELECT name FROM jobs_job WHERE id = %s AND state = %s", [job.id, JobState.QUEUED.value])
        assert [tuple(row) for row in cursor.fetchall()] == [("t",)]
    assert str(job.id) in logged.captured_queries[0]["sql"], "the statement is logged with its values written in"
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert any("FROM jobs_job WHERE id = $1" in statement for statement in prepared), prepared
