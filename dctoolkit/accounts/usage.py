"""Charging finished jobs to their owners (the I/O side of fair share)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction

from dctoolkit.fastsql import Add, Compiled, update_rows

from .fairshare import charge
from .models import Account, DailyUsage

# The account's row, locked until the job's end is recorded (compiled once: see fastsql).
LOCKED_ACCOUNT = Compiled(lambda: Account.objects.select_for_update().filter(user_id=0))


def charge_job(user_id: int, cpus: int, wall_seconds: float, now: datetime) -> None:
    """Add `cpus x wall_seconds` to the user's decayed usage and to today's total."""
    cost = cpus * max(wall_seconds, 0.0)
    # Inside a caller's transaction (a job's end), no savepoint of its own: two statements fewer per job.
    with transaction.atomic(savepoint=False):
        found = LOCKED_ACCOUNT.objects(user_id)
        if not found:  # the user's first job: make the account, then lock it as above
            Account.objects.get_or_create(user_id=user_id)
            found = LOCKED_ACCOUNT.objects(user_id)
        (account,) = found
        usage = charge(account.usage, account.usage_at, now, settings.DCT_FAIRSHARE_HALFLIFE_SECONDS, cost)
        update_rows(Account, {"user_id": user_id}, {"usage": usage, "usage_at": now})
        # One UPDATE on every day but the first; the account row's lock (above)
        # keeps two charges of one user from both creating the day's row.
        today = {"user_id": user_id, "day": now.date()}
        if not update_rows(DailyUsage, today, {"cpu_seconds": Add(cost), "jobs": Add(1)}):
            DailyUsage.objects.create(user_id=user_id, day=now.date(), cpu_seconds=cost, jobs=1)
