"""THE fair-share rule: decayed usage, effective usage and whose turn it is; pure arithmetic, time passed in.

Everything that orders users calls this module: the scheduler's planner
(`jobs.scheduling.policy`), the portal's waiting list and a job's reason to
wait (`jobs.scheduling.waiting`), and the usage table (`accounts.reports`).
The one reader of the inputs is `accounts.usage.standings` (and `teams` beside it, for the groups).

The rule
- What a job costs a second is what it holds, weighted and summed, as
  Slurm's billing (`Billing`, from DCT_BILLING: `cpu=1,gpu=8,mem_gb=0.25`;
  the default `cpu=1` is cpus x wall seconds).  Every charge below is in
  these units ("cpu" below reads "billed unit" under other weights).
- A user's effective usage is (decayed past usage + what their dispatched
  and running jobs have used so far) / share.
- Lower effective usage is served first; on a tie, the lower user id.
- Each job a user is given charges them `rate x PLACED_CHARGE_SECONDS` at
  once (a job counts at least that while dispatched or running), so users
  whose usage is equal take turns, in one pass as across passes.
- Two levels (accounting groups, `./dct group`): teams are served first by
  the team's effective usage (the group's decayed usage plus its running
  charge, over the group's share), then, within the team, users by their
  own effective usage as above.  A job given charges its team as it charges
  its user (over the group's share, so that one pass hands out turns as
  the shares say).  A user in no group is a team of one whose usage is theirs, so
  without groups the order is exactly the one-level order.  A user takes
  turns in the team their jobs charge by default (their first group).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dctoolkit.accounts.limits import NO_CAPS, Caps

# What a job charges its owner from the moment it is placed, per cpu, before
# it has run that long: enough to alternate between users whose usage is equal.
PLACED_CHARGE_SECONDS = 1.0

BILLING_NAMES = ("cpu", "gpu", "mem_gb")


class BillingError(ValueError):
    """A DCT_BILLING value that is not `NAME=WEIGHT,...` of cpu, gpu, mem_gb (the message says what to write)."""


@dataclass(frozen=True)
class Billing:
    """What a job costs a second: `cpu` per cpu + `gpu` per GPU + `mem_gb` per GB of memory it holds."""

    cpu: float = 1.0
    gpu: float = 0.0
    mem_gb: float = 0.0

    def rate(self, cpus: int, gpus: int = 0, memory_mb: int = 0) -> float:
        """Billed units a second for a job holding these."""
        return self.cpu * cpus + self.gpu * gpus + self.mem_gb * memory_mb / 1024

    @property
    def least(self) -> float:
        """The least any job costs a second (every job holds at least one cpu; `cpu` is never 0)."""
        return self.cpu


CPU_ONLY = Billing()


def parse_billing(text: str) -> Billing:
    """`cpu=1,gpu=8,mem_gb=0.25` -> Billing (names not given weigh 0, but cpu weighs 1 unless given);
    raises BillingError naming what is wrong."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not eq or name not in BILLING_NAMES:
            raise BillingError(
                f"'{part}' is not NAME=WEIGHT of cpu, gpu or mem_gb; write it as cpu=1,gpu=8,mem_gb=0.25"
            )
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not 0 <= weight < 1e6 or weight != weight:  # noqa: PLR0124 (NaN)
            raise BillingError(f"{name}={value.strip()}: a weight is a number from 0 up, such as {name}=1")
        weights[name] = weight
    billing = Billing(**{"cpu": 1.0, **weights})
    if billing.cpu <= 0:
        raise BillingError("cpu must weigh more than 0 (every job holds a cpu; fair share counts on it)")
    return billing


def decayed(usage: float, since: datetime | None, now: datetime, halflife_seconds: float) -> float:
    """`usage` recorded at `since`, as it stands at `now` after halving every half-life."""
    if since is None or usage <= 0:
        return max(usage, 0.0)
    elapsed = max((now - since).total_seconds(), 0.0)
    return usage * math.pow(0.5, elapsed / halflife_seconds)


def charge(usage: float, since: datetime | None, now: datetime, halflife_seconds: float, cpu_seconds: float) -> float:
    """New usage at `now` after adding `cpu_seconds` (cpus x wall) to the decayed balance."""
    return decayed(usage, since, now, halflife_seconds) + max(cpu_seconds, 0.0)


def running_charge(jobs: Iterable[tuple[float, datetime | None]], now: datetime) -> float:
    """rate x seconds so far, at least `PLACED_CHARGE_SECONDS`, for (rate, started_at) of dispatched and running
    jobs (`Billing.rate`; with the default billing, the rate is the cpus).

    A dispatched job (no start yet) counts what the planner charged it in
    the pass that placed it, so the next pass sees that charge too.
    """
    total = 0.0
    for rate, started in jobs:
        seconds = max((now - started).total_seconds(), 0.0) if started else 0.0
        total += rate * max(seconds, PLACED_CHARGE_SECONDS)
    return total


def charged_start(
    started: datetime | None, suspended_seconds: float, suspended_at: datetime | None, now: datetime
) -> datetime | None:
    """The start a running job is charged from: its real start moved on by the time it was suspended
    (a desktop node's owner came back: that time is not charged), the current spell included."""
    if started is None:
        return None
    stopped = suspended_seconds + (max((now - suspended_at).total_seconds(), 0.0) if suspended_at else 0.0)
    return started + timedelta(seconds=stopped) if stopped else started


def effective_usage(decayed_usage: float, running: float, share: float) -> float:
    """(decayed past usage + running charge) / share: the number fair share orders by."""
    return (decayed_usage + running) / max(share, 1e-9)


@dataclass(frozen=True)
class UserUsage:
    """One user's standing: decayed past usage plus what is running now, scaled by share."""

    user_id: int
    decayed_usage: float
    running_charge: float
    share: float = 1.0
    running_jobs: int = 0  # dispatched or running now, and the GPUs they hold (for the caps)
    running_gpus: int = 0
    caps: Caps = NO_CAPS  # `accounts.limits`: not fair share's, but read with it (the same account row)
    group_id: int | None = None  # the group they take turns in (their first), None: in no group

    @property
    def usage(self) -> float:
        """Decayed past usage plus the running charge, before the share."""
        return self.decayed_usage + self.running_charge

    @property
    def effective(self) -> float:
        return effective_usage(self.decayed_usage, self.running_charge, self.share)


def priority_key(usage: float, user_id: int) -> tuple[float, int]:
    """Sorts users first-served first: lower effective usage, then (the tie-break) lower user id."""
    return (usage, user_id)


# A team's name in the order: (0, user id) for a user in no group, (1, group id) for a group, so that
# ties between lone users go to the lower user id as with one level.
TeamId = tuple[int, int]


@dataclass(frozen=True)
class Team:
    """The team a user takes turns in: its name (`TeamId`), its effective usage (over the group's share) and
    that share, which each job given in a pass is charged over too (a lone user's team charges as they do)."""

    id: TeamId
    usage: float
    share: float = 1.0


def lone(user_id: int, usage: float) -> Team:
    """A user in no group: a team of one, whose usage is the user's."""
    return Team((0, user_id), usage)


def group_team(group_id: int, decayed_usage: float, running: float, share: float) -> Team:
    """A group's team: (its decayed usage + what its dispatched and running jobs used so far) / its share."""
    return Team((1, group_id), effective_usage(decayed_usage, running, share), max(share, 1e-9))


def team_of(user_id: int, usage: Mapping[int, float], teams: Mapping[int, Team] | None) -> Team:
    """The team `user_id` takes turns in (`teams`: users in groups; anyone else is a team of one)."""
    team = teams.get(user_id) if teams else None
    return team if team is not None else lone(user_id, usage.get(user_id, 0.0))


def priority_order(usage: Mapping[int, float], teams: Mapping[int, Team] | None = None) -> list[int]:
    """User ids (user id -> effective usage), first served first: by their team's usage, then their own."""

    def key(uid: int) -> tuple[float, TeamId, float, int]:
        team = team_of(uid, usage, teams)
        return (team.usage, team.id, *priority_key(usage[uid], uid))

    return sorted(usage, key=key)


class Turns:
    """Whose turn it is, one job at a time: the team first in order (lower usage, then `TeamId`), within it
    the user first in `priority_key` order; each job given charges both the user and their team.

    The planner and the waiting list both take turns through this class, so
    that the portal's order is the order the scheduler places jobs in.
    """

    def __init__(self, usage: Mapping[int, float], teams: Mapping[int, Team] | None = None) -> None:
        """`usage`: user id -> effective usage, for the users taking turns; `teams`: the team of each user in a
        group (`team_of`; anyone else is a team of one, which is the one-level order)."""
        self._members: dict[TeamId, list[tuple[float, int]]] = {}
        self._team_of: dict[int, TeamId] = {}
        charged: dict[TeamId, float] = {}
        self._share: dict[TeamId, float] = {}
        for uid, used in usage.items():
            team = team_of(uid, usage, teams)
            self._members.setdefault(team.id, []).append(priority_key(used, uid))
            self._team_of[uid] = team.id
            charged[team.id] = team.usage
            self._share[team.id] = team.share
        for members in self._members.values():
            heapq.heapify(members)
        self._heap = [(used, team) for team, used in charged.items()]
        heapq.heapify(self._heap)
        self._count = len(self._team_of)
        self._out: tuple[TeamId, float] | None = None  # the team of the user `next` gave, until settled

    def __len__(self) -> int:
        return self._count

    def next(self) -> tuple[int, float]:
        """The user whose turn it is, and their usage so far; they leave the turns until `again`."""
        self._settle(0.0)
        team_charged, team = heapq.heappop(self._heap)
        charged, uid = heapq.heappop(self._members[team])
        self._out = (team, team_charged)
        self._count -= 1
        return uid, charged

    def again(self, user_id: int, charged: float, rate: float) -> None:
        """`user_id` (usage so far `charged`) was given a job costing `rate` a second and has more waiting."""
        team = self._team_of[user_id]
        heapq.heappush(self._members[team], priority_key(charged + rate * PLACED_CHARGE_SECONDS, user_id))
        self._count += 1
        self._settle(rate)

    def leave(self, rate: float = 0.0) -> None:
        """The user `next` gave leaves the turns, having been given a job costing `rate` a second (0: none).
        (Not calling it is leaving with nothing given: the next `next` settles it so.)"""
        self._settle(rate)

    def _settle(self, rate: float) -> None:
        # The team of the user last given goes back to the order, charged for what they were given, while
        # it has members taking turns.
        if self._out is None:
            return
        team, team_charged = self._out
        self._out = None
        if self._members[team]:
            heapq.heappush(self._heap, (team_charged + rate * PLACED_CHARGE_SECONDS / self._share[team], team))


@dataclass(frozen=True)
class Served:
    """The order in which queued jobs are served: (user id, index into that user's queue), first first.

    `wants_more` is set when the order stopped at a user whose known jobs ran
    out while they may have more: read more of theirs and ask again.  `rest`
    is set when the order stopped because one user was left: every later
    turn is theirs, their remaining jobs in submission order.
    """

    order: list[tuple[int, int]]
    wants_more: frozenset[int] = frozenset()
    rest: int | None = None


def serve_order(
    rates: Mapping[int, Sequence[float]],
    usage: Mapping[int, float],
    more: Collection[int] = (),
    count: int | None = None,
    until_one: bool = False,
    teams: Mapping[int, Team] | None = None,
) -> Served:
    """The first `count` (default: all known) queued jobs in the order fair share serves them, if every job fitted.

    `rates`: user id -> what each of their oldest queued jobs costs a second
    (`Billing.rate`), in submission order (as many as are known); `more`: users who may have more queued
    jobs than are known; `usage`: user id -> effective usage (missing is 0).
    `until_one`: stop when one user is left (`Served.rest`), whose order is
    then plain.  `teams`: the team of each user in a group (`Turns`).
    """
    turns = Turns({uid: usage.get(uid, 0.0) for uid, jobs in rates.items() if jobs}, teams)
    order: list[tuple[int, int]] = []
    taken = dict.fromkeys(rates, 0)
    while turns and (count is None or len(order) < count):
        if len(turns) == 1 and until_one:
            return Served(order, rest=turns.next()[0])
        uid, charged = turns.next()
        index = taken[uid]
        order.append((uid, index))
        taken[uid] = index + 1
        if index + 1 < len(rates[uid]):
            turns.again(uid, charged, rates[uid][index])
            continue
        turns.leave(rates[uid][index])
        if uid in more:
            return Served(order, frozenset([uid]))
    return Served(order)


def served_before(
    standing: float, user_id: int, other_usage: float, other_id: int, other_rates: Iterable[float]
) -> int:
    """How many of another user's queued jobs (what each costs a second, oldest first) are served before a job
    of `user_id` whose turn comes at usage `standing`.

    `other_rates` must reach past the answer (or be all of their jobs): each
    job costs at least `Billing.least`, so `ahead_limit` of them are enough.
    """
    mine = priority_key(standing, user_id)
    ahead, charged = 0, other_usage
    for rate in other_rates:
        if priority_key(charged, other_id) >= mine:
            break
        ahead += 1
        charged += rate * PLACED_CHARGE_SECONDS
    return ahead


def ahead_limit(standing: float, other_usage: float, least: float = 1.0) -> int:
    """Enough of another user's oldest jobs to count how many are served before a turn at usage `standing`.

    Each job charges at least `least x PLACED_CHARGE_SECONDS` (one cpu's worth, `Billing.least`), so no more
    than (standing - other_usage) / that + 1 can be; one more is read against rounding.
    """
    if other_usage > standing:
        return 0
    return int((standing - other_usage) / (least * PLACED_CHARGE_SECONDS)) + 2
