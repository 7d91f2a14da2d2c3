"""The waiting list in fair-share order, a page at a time, at a cost that does not grow with the queue.

The order is the scheduler's: users with lower usage first, each user's jobs
in submission order; held jobs come after every queued one.  With 100,000
queued jobs a page costs one GROUP BY (queued jobs per user), the users'
usage, and one indexed slice per user the page reaches; no Python loop
visits the whole queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet

from .dispatch import effective_usage
from .models import Job, JobState

PER_PAGE = 50


@dataclass(frozen=True)
class QueueOrder:
    """Queued jobs per user, the users in fair-share order, and each user's usage."""

    counts: Mapping[int, int]
    usage: Mapping[int, float]
    owners: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def offset(self, owner: int) -> int:
        """How many queued jobs of other users come before this user's first."""
        before = 0
        for other in self.owners:
            if other == owner:
                return before
            before += self.counts[other]
        return before

    def ahead_of(self, owner: int) -> int:
        """Queued jobs of users whose usage is lower than `owner`'s (the reason text's number)."""
        mine = self.usage.get(owner, 0.0)
        return sum(n for uid, n in self.counts.items() if uid != owner and self.usage[uid] < mine)


def fair_order(counts: Mapping[int, int], usage: Mapping[int, float]) -> tuple[int, ...]:
    """Users with queued jobs, next first: lower usage first, then lower user id."""
    return tuple(sorted(counts, key=lambda owner: (usage[owner], owner)))


def queue_order(now: datetime) -> QueueOrder:
    """The fair-share order as it stands (one GROUP BY and the users' usage)."""
    rows = Job.objects.filter(state=JobState.QUEUED).values_list("owner_id").annotate(n=Count("id")).order_by()
    counts = dict(rows)
    usage = effective_usage(list(counts), now)
    return QueueOrder(counts=counts, usage=usage, owners=fair_order(counts, usage))


def ahead_own(jobs: list[Job]) -> dict[int, int]:
    """job id -> how many queued jobs of its owner are older, for queued `jobs` (two indexed counts per owner)."""
    by_owner: dict[int, list[int]] = {}
    for job in jobs:
        if job.state == JobState.QUEUED:
            by_owner.setdefault(job.owner_id, []).append(job.id)
    ranks: dict[int, int] = {}
    for owner, ids in by_owner.items():
        ids.sort()
        own = Job.objects.filter(state=JobState.QUEUED, owner_id=owner)
        first = own.filter(id__lt=ids[0]).count()
        between = own.filter(id__gte=ids[0], id__lt=ids[-1]).aggregate(
            **{f"r{i}": Count("id", filter=Q(id__lt=job_id)) for i, job_id in enumerate(ids)}
        )
        ranks.update({job_id: first + (between[f"r{i}"] or 0) for i, job_id in enumerate(ids)})
    return ranks


@dataclass(frozen=True)
class WaitingPage:
    """One page of the waiting list: its jobs, each queued one's place (1 = next), and the pager's facts."""

    jobs: list[Job]
    positions: dict[int, int]
    number: int
    count: int

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.count // PER_PAGE))

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.num_pages else None


def waiting_page(visible: QuerySet[Job], order: QueueOrder, owner: int | None, number: int) -> WaitingPage:
    """Page `number` of the waiting jobs in `visible` (everyone's when owner is None, else that user's)."""
    owners = order.owners if owner is None else tuple(o for o in order.owners if o == owner)
    held = visible.filter(state=JobState.HELD).order_by("id")
    segments: list[tuple[QuerySet[Job], int, int | None]] = [
        (visible.filter(state=JobState.QUEUED, owner_id=o).order_by("id"), order.counts[o], o) for o in owners
    ]
    segments.append((held, held.count(), None))
    count = sum(size for _, size, _ in segments)
    number = min(max(1, number), max(1, -(-count // PER_PAGE)))
    start, end = (number - 1) * PER_PAGE, number * PER_PAGE
    jobs: list[Job] = []
    positions: dict[int, int] = {}
    seen = 0
    for rows, size, who in segments:
        if seen + size > start and seen < end:
            first = max(0, start - seen)
            part = list(rows[first : first + (end - max(start, seen))])
            if who is not None:
                base = order.offset(who) + first
                positions.update({job.id: base + i + 1 for i, job in enumerate(part)})
            jobs += part
        seen += size
    return WaitingPage(jobs=jobs, positions=positions, number=number, count=count)
