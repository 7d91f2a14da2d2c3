"""The scheduler lock: the one row a pass holds while it claims, and the count of edits of not-yet-dispatched jobs.

A pass plans outside the lock and claims under it (`dispatch.carry_out`).  The claim's UPDATE checks
only that a job is still queued, so a job whose size or placement was edited after the plan was made
would be claimed with the stale plan (overfilling a node, or landing where it may no longer go).  Every
edit bumps `SchedulerLock.edits` in its own transaction, and takes the lock row to do so before it
changes any job: an edit and a pass's claim never overlap, and a plan made before an edit is made
again (the pass compares the count it planned with to the one it reads under the lock).
"""

from __future__ import annotations

from django.db import connection

from dctoolkit.jobs.models import SchedulerLock
from dctoolkit.lib import fastsql
from dctoolkit.lib.fastsql import update_returns_rows


def _table() -> str:
    return connection.ops.quote_name(SchedulerLock._meta.db_table)


def take_scheduler_lock() -> int:
    """Hold the scheduler lock's row until the transaction ends (an UPDATE locks it on every database);
    returns the edit count as of now (every edit before it committed, none can commit until this
    transaction ends).  One statement where UPDATE can return the count (`update_returns_rows`)."""
    returning = update_returns_rows()
    with fastsql.cursor() as cursor:
        cursor.execute(f"UPDATE {_table()} SET id = id WHERE id = 1" + " RETURNING edits" * returning)  # noqa: S608
        row = cursor.fetchone() if returning else None
        if row is not None:
            return int(row[0])
        locked = not returning and cursor.rowcount > 0
    if not locked:
        SchedulerLock.objects.get_or_create(id=1)  # the first pass ever
        SchedulerLock.objects.select_for_update().get(id=1)
    return edits_seen()


def edits_seen() -> int:
    """How many edits of waiting, queued or held jobs have committed (0 before the first pass)."""
    with fastsql.cursor() as cursor:
        cursor.execute(f"SELECT edits FROM {_table()} WHERE id = 1")  # noqa: S608
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def note_edit() -> None:
    """Count one edit, holding the lock row until the caller's transaction ends.

    Call it inside the edit's transaction before any job is changed: it waits for a pass that holds
    the lock to finish its claims (and the pass, had it been first to a job's row, would otherwise
    wait on the edit: a deadlock).
    """
    with fastsql.cursor() as cursor:
        cursor.execute(f"UPDATE {_table()} SET edits = edits + 1 WHERE id = 1")  # noqa: S608
        if cursor.rowcount:
            return
    SchedulerLock.objects.get_or_create(id=1)  # no pass has run yet
    with fastsql.cursor() as cursor:
        cursor.execute(f"UPDATE {_table()} SET edits = edits + 1 WHERE id = 1")  # noqa: S608
