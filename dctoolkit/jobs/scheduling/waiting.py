"""The waiting list in the scheduler's order, a page at a time, reading only as deep as the page reaches.

The order is the scheduler's own (`accounts.fairshare`: lower effective
usage first, ties to the lower user id, each job given charging its owner,
so users of equal usage take turns), each user's jobs in submission order;
held jobs come after every queued one.  A page costs one GROUP BY (queued
jobs per user), the users' usage, and each user's oldest queued jobs as
deep as the page's turns reach (`queues.read_heads`); once one user is left,
their jobs are a slice.  Page 1 of 100,000 queued jobs reads a few rows per
user; a job's place (a user's own page, a reason) reads the other users'
jobs that can come before it, and sums, rather than reads, a long queue far
below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.expressions import CombinedExpression

from dctoolkit.accounts.fairshare import (
    PLACED_CHARGE_SECONDS,
    Billing,
    Team,
    ahead_limit,
    priority_key,
    serve_order,
    served_before,
)
from dctoolkit.accounts.usage import billing, standings, teams
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling.queues import Heads, read_heads

PER_PAGE = 50


@dataclass(frozen=True)
class QueueOrder:
    """Queued jobs per user and each user's effective usage: what the order is worked out from."""

    counts: Mapping[int, int]
    usage: Mapping[int, float]
    teams: Mapping[int, Team] = field(default_factory=dict)  # the users in accounting groups, their group's team

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def ahead_of(self, owner: int) -> int:
        """Queued jobs of other users the scheduler serves before `owner`'s oldest (reads their heads)."""
        return served_ahead(self, owner, [self.usage.get(owner, 0.0)])[0]


def queue_order(now: datetime) -> QueueOrder:
    """The fair-share order as it stands (one GROUP BY on the queue's index, the users' usage and their groups')."""
    rows = Job.objects.filter(state=JobState.QUEUED).values_list("owner_id").annotate(n=Count("id")).order_by()
    counts = dict(rows)
    found = standings(counts, now)
    return QueueOrder(counts=counts, usage={uid: s.effective for uid, s in found.items()}, teams=teams(found, now))


def served_ids(order: QueueOrder, start: int, end: int) -> list[int]:
    """Ids of the queued jobs the scheduler serves `start`-th to `end`-th (from 0), were every job to fit.

    Reads each user's oldest jobs as deep as the turns reach; once one user
    is left, their jobs are one slice.
    """
    end = min(end, order.total)
    if end <= start:
        return []
    # An equal share of the turns to the page's end, but no deeper than a few pages at first.
    depth = min(-(-end // len(order.counts)) + 1, end, 4 * PER_PAGE)
    heads = Heads({uid: [] for uid in order.counts}, set(order.counts), end)
    got = read_heads(dict.fromkeys(order.counts, depth))
    for uid in order.counts:
        heads.jobs[uid] = got.get(uid, [])
        heads.note_read(uid, len(heads.jobs[uid]), depth)
    weights = billing()
    while True:
        rates = {
            uid: [weights.rate(job.cpus, job.gpus, job.memory_mb) for job in jobs] for uid, jobs in heads.jobs.items()
        }
        served = serve_order(rates, order.usage, heads.more, end, until_one=True, teams=order.teams)
        if not served.wants_more:
            break
        # Users read no deeper than the one who ran out are likely next: read theirs too, in the same query.
        reached = max(len(heads.jobs[uid]) for uid in served.wants_more)
        heads.read_more(served.wants_more | {uid for uid in heads.more if len(heads.jobs[uid]) <= reached})
    ids = [heads.jobs[uid][index].id for uid, index in served.order[start:]]
    if served.rest is not None and len(served.order) < end:
        first = sum(1 for uid, _ in served.order if uid == served.rest) + max(0, start - len(served.order))
        own = (
            Job.objects.filter(state=JobState.QUEUED, owner_id=served.rest)
            .order_by(*OWN_ORDER)
            .values_list("id", flat=True)
        )
        ids += own[first : first + end - max(start, len(served.order))]
    return ids


def served_ahead(order: QueueOrder, owner: int, standings: Sequence[float], first: int = 0) -> list[int]:
    """For each of `owner`'s turns at these usages (ascending; their jobs `first`, `first` + 1, ... of their own
    order), how many other users' queued jobs come first.

    Reads only the users whose jobs can come before the turns, as deep as
    can matter; a user with a long queue far below is summed, not read.
    With accounting groups in the queue, one user's turns move another's
    (a job given charges the group), so the turns are taken instead
    (`served_ahead_in_turns`).
    """
    if not standings:
        return []
    if order.teams and owner in order.counts:
        return served_ahead_in_turns(order, owner, first, len(standings))
    low, high = standings[0], standings[-1]
    weights = billing()
    ahead = [0] * len(standings)
    deep: dict[int, int] = {}
    for uid, usage in order.usage.items():
        if uid == owner or priority_key(usage, uid) >= priority_key(high, owner):
            continue  # none of theirs comes before any of these turns
        depth = min(order.counts[uid], ahead_limit(high, usage, weights.least))
        if depth > READ_AT_MOST and _all_before(uid, usage, order.counts[uid], low, weights):
            ahead = [n + order.counts[uid] for n in ahead]
        else:
            deep[uid] = depth
    for uid, jobs in read_heads(deep).items():
        rates = [weights.rate(job.cpus, job.gpus, job.memory_mb) for job in jobs]
        usage = order.usage[uid]
        ahead = [n + served_before(s, owner, usage, uid, rates) for n, s in zip(ahead, standings, strict=True)]
    return ahead


# Past this many of a user's jobs, whether they all come first is asked of the database (a SUM), not read.
READ_AT_MOST = 1000


def served_ahead_in_turns(order: QueueOrder, owner: int, first: int, count: int) -> list[int]:
    """For `owner`'s jobs `first` .. `first` + `count` - 1 (of their own order), how many other users' queued jobs
    the turns serve first (`fairshare.serve_order` with the groups' teams), reading the users' heads as deep as
    the turns reach."""
    last = first + count
    total = order.total
    heads = Heads({uid: [] for uid in order.counts}, set(order.counts), total)
    depth = {uid: min(n, last + 1) for uid, n in order.counts.items()}
    got = read_heads(depth)
    for uid in order.counts:
        heads.jobs[uid] = got.get(uid, [])
        heads.note_read(uid, len(heads.jobs[uid]), depth[uid])
    weights = billing()
    while True:
        rates = {
            uid: [weights.rate(job.cpus, job.gpus, job.memory_mb) for job in jobs] for uid, jobs in heads.jobs.items()
        }
        served = serve_order(rates, order.usage, heads.more, teams=order.teams)
        mine = [k for k, (uid, _) in enumerate(served.order) if uid == owner]
        if len(mine) >= last or not served.wants_more:
            break
        heads.read_more(served.wants_more)
    # Each of the owner's turns: its place in the order less the owner's own jobs before it.
    ahead = [k - index for index, k in enumerate(mine)][first:last]
    # Turns the known jobs did not reach (the owner's queue read short): every other job is ahead.
    return ahead + [total - order.counts.get(owner, 0)] * (count - len(ahead))


def _all_before(owner: int, usage: float, count: int, standing: float, weights: Billing) -> bool:
    """Whether every queued job of `owner` (`count` of them) has its turn below usage `standing`."""
    if usage + (count - 1) * weights.least * PLACED_CHARGE_SECONDS >= standing:
        return False  # each job charges at least one cpu's worth: the last one's turn is no lower than that
    own = Job.objects.filter(state=JobState.QUEUED, owner_id=owner)
    last = own.order_by("priority", "-id").values_list("request_cpus", "request_gpus", "request_memory_mb").first()
    last_rate = weights.rate(*last) if last else weights.least
    total = own.aggregate(units=Sum(rate_of(weights)))["units"] or count * weights.least
    return usage + (total - last_rate) * PLACED_CHARGE_SECONDS < standing


def rate_of(weights: Billing) -> CombinedExpression:
    """`Billing.rate` of a job row, as SQL (to SUM what a long queue costs without reading it)."""
    return (
        F("request_cpus") * weights.cpu
        + F("request_gpus") * weights.gpu
        + F("request_memory_mb") * (weights.mem_gb / 1024)
    )


# A user's own queued jobs in the order they are served (queues.serving_order, in SQL).
OWN_ORDER = ("-priority", "id")


def ahead_in_own_order(job: Job) -> Q:
    """A user's own jobs served before `job`: a higher priority, or the same one and older."""
    return Q(priority__gt=job.priority) | Q(priority=job.priority, id__lt=job.id)


def ahead_own(jobs: list[Job]) -> dict[int, int]:
    """job id -> how many queued jobs of its owner come before it (higher priority, or the same and older),
    for queued `jobs` (two indexed counts per owner while the owner's jobs all have one priority)."""
    by_owner: dict[int, list[Job]] = {}
    for job in jobs:
        if job.state == JobState.QUEUED:
            by_owner.setdefault(job.owner_id, []).append(job)
    ranks: dict[int, int] = {}
    for owner, mine in by_owner.items():
        own = Job.objects.filter(state=JobState.QUEUED, owner_id=owner)
        highest = own.order_by("-priority").values_list("priority", flat=True).first()
        lowest = own.order_by("priority").values_list("priority", flat=True).first()
        if highest != lowest:
            counts = own.aggregate(**{f"r{j.id}": Count("id", filter=ahead_in_own_order(j)) for j in mine})
            ranks.update({j.id: counts[f"r{j.id}"] or 0 for j in mine})
            continue
        # One priority: naming it lets the counts range over ids in the (state, owner, -priority, id) index.
        if highest is not None:
            own = own.filter(priority=highest)
        ids = sorted(j.id for j in mine)
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
    """Page `number` of the waiting jobs in `visible` (everyone's when owner is None, else that user's).

    Queued jobs come in the scheduler's order, each with its place in the
    whole queue (1 = next); held jobs follow, without a place.
    """
    queued = order.total if owner is None else order.counts.get(owner, 0)
    held = visible.filter(state=JobState.HELD).order_by("id")
    # Jobs waiting on a dependency or a retry delay come after the queue, then the held ones (neither has a
    # place in it).
    later = visible.filter(state=JobState.WAITING).order_by("id")
    waiting_count = later.count()
    count = queued + waiting_count + held.count()
    number = min(max(1, number), max(1, -(-count // PER_PAGE)))
    start, end = (number - 1) * PER_PAGE, number * PER_PAGE
    if owner is None:
        part, positions = _everyones(visible, order, start, min(end, queued))
    else:
        part, positions = _owners(visible, order, owner, start, min(end, queued))
    after_queue = start - queued, end - queued
    jobs = part + _slice(later, *after_queue) + _slice(held, *(i - waiting_count for i in after_queue))
    return WaitingPage(jobs=jobs, positions=positions, number=number, count=count)


def _slice(rows: QuerySet[Job], start: int, end: int) -> list[Job]:
    """rows[start:end] where a negative start means from the first row (and an end <= 0, none)."""
    return list(rows[max(0, start) : end]) if end > 0 else []


def _everyones(visible: QuerySet[Job], order: QueueOrder, start: int, end: int) -> tuple[list[Job], dict[int, int]]:
    if end <= start:
        return [], {}
    ids = served_ids(order, start, end)
    rows = visible.in_bulk(ids)
    # A job started or cancelled since the order was read is left out.
    return [rows[i] for i in ids if i in rows], {job_id: start + k + 1 for k, job_id in enumerate(ids)}


def _owners(
    visible: QuerySet[Job], order: QueueOrder, owner: int, start: int, end: int
) -> tuple[list[Job], dict[int, int]]:
    if end <= start:
        return [], {}
    own = visible.filter(state=JobState.QUEUED, owner_id=owner).order_by(*OWN_ORDER)
    part = list(own[start:end])
    if not part:
        return [], {}
    weights = billing()
    before = own.filter(ahead_in_own_order(part[0])).aggregate(units=Sum(rate_of(weights)))["units"] or 0
    standings, charged = [], order.usage.get(owner, 0.0) + before * PLACED_CHARGE_SECONDS
    for job in part:
        standings.append(charged)
        charged += weights.rate(job.request_cpus, job.request_gpus, job.request_memory_mb) * PLACED_CHARGE_SECONDS
    ahead = served_ahead(order, owner, standings, start)
    return part, {job.id: start + k + others + 1 for k, (job, others) in enumerate(zip(part, ahead, strict=True))}
