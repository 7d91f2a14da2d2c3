"""Charging finished jobs to their owners (the I/O side of fair share)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F

from .fairshare import charge
from .models import Account, DailyUsage


def charge_job(user_id: int, cpus: int, wall_seconds: float, now: datetime) -> None:
    """Add `cpus x wall_seconds` to the user's decayed usage and to today's total."""
    cost = cpus * max(wall_seconds, 0.0)
    with transaction.atomic():
        account, _ = Account.objects.select_for_update().get_or_create(user_id=user_id)
        account.usage = charge(account.usage, account.usage_at, now, settings.DCT_FAIRSHARE_HALFLIFE_SECONDS, cost)
        account.usage_at = now
        account.save(update_fields=["usage", "usage_at"])
        # One UPDATE on every day but the first; the account row's lock (above)
        # keeps two charges of one user from both creating the day's row.
        today = DailyUsage.objects.filter(user_id=user_id, day=now.date())
        if not today.update(cpu_seconds=F("cpu_seconds") + cost, jobs=F("jobs") + 1):
            DailyUsage.objects.create(user_id=user_id, day=now.date(), cpu_seconds=cost, jobs=1)
