"""The fair-share table: users, decayed usage, priority, running and queued counts; and the accounting groups."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from dctoolkit.accounts.fairshare import effective_usage, priority_key, priority_order
from dctoolkit.accounts.models import Account, Group, Membership
from dctoolkit.accounts.usage import group_usages, standings, teams
from dctoolkit.jobs.models import ACTIVE_STATES, JobState


def usage_payload(now: datetime) -> list[dict]:
    """One row per user who has an account, a job waiting or a job running; priority 1 goes first.

    The priority is the scheduler's order (`fairshare.priority_order`: their
    group's effective usage first, then their own, ties to the lower id).
    """
    users = get_user_model().objects.annotate(
        running=Count("jobs", filter=Q(jobs__state__in=ACTIVE_STATES)),
        queued=Count("jobs", filter=Q(jobs__state=JobState.QUEUED)),
    )
    with_account = set(Account.objects.values_list("user_id", flat=True))
    listed = {user.id: user for user in users if user.id in with_account or user.running or user.queued}
    standing = standings(listed, now)
    order = priority_order({uid: s.effective for uid, s in standing.items()}, teams(standing, now))
    names = dict(Group.objects.values_list("id", "name"))
    return [
        {
            "user": listed[uid].username,
            "group": names.get(standing[uid].group_id or 0),
            "usage": round(standing[uid].usage, 1),
            "effective_usage": round(standing[uid].effective, 1),
            "share": standing[uid].share,
            "running": listed[uid].running,
            "queued": listed[uid].queued,
            "priority": rank,
        }
        for rank, uid in enumerate(order, start=1)
    ]


def group_payload(now: datetime) -> list[dict]:
    """One row per accounting group, priority 1 first (lower usage over share, ties to the older group);
    `members` in the order they joined."""
    found = group_usages(Group.objects.values_list("id", flat=True), now)
    members: dict[int, list[str]] = {gid: [] for gid in found}
    for gid, name in Membership.objects.order_by("id").values_list("group_id", "user__username"):
        members.setdefault(gid, []).append(name)

    def key(gid: int) -> tuple[float, int]:
        group, usage = found[gid]
        return priority_key(effective_usage(usage, 0.0, group.share), gid)

    return [
        {
            "group": found[gid][0].name,
            "share": found[gid][0].share,
            "usage": round(found[gid][1], 1),
            "effective_usage": round(effective_usage(found[gid][1], 0.0, found[gid][0].share), 1),
            "priority": rank,
            "members": members[gid],
        }
        for rank, gid in enumerate(sorted(found, key=key), start=1)
    ]
