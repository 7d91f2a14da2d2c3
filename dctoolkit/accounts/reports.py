"""The fair-share table: users, decayed usage, priority, running and queued counts."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from dctoolkit.jobs.models import ACTIVE_STATES, JobState

from .fairshare import decayed, running_charge
from .models import Account


def usage_payload(now: datetime) -> list[dict]:
    """One row per user who has an account, a job waiting or a job running; priority 1 goes first."""
    users = get_user_model().objects.annotate(
        running=Count("jobs", filter=Q(jobs__state__in=ACTIVE_STATES)),
        queued=Count("jobs", filter=Q(jobs__state=JobState.QUEUED)),
    )
    accounts = {a.user_id: a for a in Account.objects.all()}
    halflife = settings.DCT_FAIRSHARE_HALFLIFE_SECONDS
    rows = []
    for user in users:
        account = accounts.get(user.id)
        if account is None and not user.running and not user.queued:
            continue
        past = decayed(account.usage, account.usage_at, now, halflife) if account else 0.0
        live = running_charge(user.jobs.filter(state=JobState.RUNNING).values_list("request_cpus", "started_at"), now)
        share = account.share if account else 1.0
        rows.append(
            {
                "user": user.username,
                "usage": round(past + live, 1),
                "effective_usage": round((past + live) / max(share, 1e-9), 1),
                "share": share,
                "running": user.running,
                "queued": user.queued,
            }
        )
    rows.sort(key=lambda r: (r["effective_usage"], r["user"]))
    for rank, row in enumerate(rows, start=1):
        row["priority"] = rank
    return rows
