"""The partial job indexes (jobs migration 0021) serve the statements they are for: each statement's plan names
its index, so making an index partial left no chore reading the whole job table.

Beside the jobs of a test, 5,000 plain ones in every state (none with a
retry or start time, a policy, a DAG or a group), and the table analysed, so
that PostgreSQL's planner sees what a real queue looks like (with a few rows
it picks any index, or none); SQLite plans from the schema alone.  A plan
shows a partial index only where the statement's conditions imply the index's.
MySQL and MariaDB have no partial indexes: the migration changed nothing there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling import housekeeping
from tests.db.conftest import sub

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def partial_indexes():
    if not connection.features.supports_partial_indexes:
        pytest.skip("MySQL and MariaDB have no partial indexes: migration 0021 keeps their full ones")


@pytest.fixture(autouse=True)
def plain_jobs(alice, folder, partial_indexes):
    from bench.rows import insert_jobs  # rows made by the database, in one statement

    (job,) = sub("", alice, folder)
    states = " ".join(f"WHEN {k} THEN '{state.value}'" for k, state in enumerate(JobState))
    constant = {"name": "t", "executable": "a.sh", "submitted_at": timezone.now()}
    insert_jobs(
        5000, [(alice.id, job.submission_id)], constant, {"state": f"CASE seq.n %% {len(JobState)} {states} END"}
    )


def plan(sql: str) -> str:
    """The query plan of `sql` (a statement as Django logged it, its values written in), as one line."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            return " | ".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute("ANALYZE jobs_job")
        cursor.execute(f"EXPLAIN {sql}")
        return " | ".join(row[0] for row in cursor.fetchall())


def statements(run: Callable[[], object], naming: str) -> list[str]:
    """The statements `run` makes that name the column `naming`."""
    with CaptureQueriesContext(connection) as queries:
        run()
    found = [q["sql"] for q in queries if naming in q["sql"] and "jobs_job" in q["sql"]]
    assert found, f"no statement named {naming}: {[q['sql'] for q in queries]}"
    return found


def test_due_retries_are_found_by_the_retry_index(alice, folder):
    (job,) = sub("", alice, folder)
    Job.objects.filter(id=job.id).update(state=JobState.WAITING, retry_at=timezone.now() - timedelta(seconds=1))
    (update,) = statements(lambda: housekeeping.queue_due_retries(timezone.now()), "retry_at")
    assert "job_retry_at" in plan(update)
    assert Job.objects.get(id=job.id).state == JobState.QUEUED  # the statement planned is the one that worked


def test_due_start_times_are_found_by_the_start_index(alice, folder):
    (job,) = sub("", alice, folder)
    Job.objects.filter(id=job.id).update(state=JobState.WAITING, start_after=timezone.now() - timedelta(seconds=1))
    found = statements(lambda: housekeeping.release_waiting(timezone.now()), "start_after")
    assert any("job_start_after" in plan(sql) for sql in found), [plan(sql) for sql in found]
    assert Job.objects.get(id=job.id).state == JobState.QUEUED


def test_jobs_with_a_periodic_policy_are_found_by_their_index(alice, folder):
    (job,) = sub("periodic_hold = JobStatus == 1\n", alice, folder)
    assert Job.objects.get(id=job.id).periodic_policy
    found = statements(lambda: housekeeping.apply_job_policies(timezone.now()), "periodic_policy")
    assert "job_has_periodic_policy" in plan(found[0])
    assert Job.objects.get(id=job.id).state == JobState.HELD


@pytest.mark.parametrize(
    "column, index",
    [("dag_id", "job_dag"), ("dag_node_id", "job_dag_node"), ("accounting_group_id", "job_accounting_group")],
)
def test_a_dags_or_groups_jobs_are_found_by_its_partial_index(column, index):
    sql, params = Job.objects.filter(**{column: 7}).values("id").query.sql_with_params()
    assert index in plan(sql % tuple(params))


def test_a_users_jobs_are_found_without_the_owners_own_index(bob):
    sql, params = Job.objects.filter(owner=bob).values("id").query.sql_with_params()  # bob's: none of the 5,000
    assert "job_owner_newest" in plan(sql % tuple(params)) or "job_state_owner_priority" in plan(sql % tuple(params))
