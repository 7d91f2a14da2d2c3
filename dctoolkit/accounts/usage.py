"""The I/O side of fair share: each user's standing read for the rule (`standings`), and finished jobs charged.

`standings` is the one reader of fair share's inputs: the scheduler, the
portal's waiting list and reasons, and the usage table all call it (and
`fairshare` for the arithmetic and the order), so they cannot disagree;
`teams` reads, beside it, the accounting group each user takes turns in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, Q, Sum

from dctoolkit.accounts.fairshare import (
    Billing,
    Team,
    UserUsage,
    charge,
    charged_start,
    decayed,
    group_team,
    parse_billing,
    running_charge,
)
from dctoolkit.accounts.limits import Caps, GroupTotals, Room, caps_of, room
from dctoolkit.accounts.models import Account, DailyGroupUsage, DailyUsage, Group, Membership
from dctoolkit.jobs.models import ACTIVE_STATES, Job
from dctoolkit.lib import fastsql
from dctoolkit.lib.fastsql import Add, Compiled, CompiledIn, insert_select_sql, update_rows


def standings(user_ids: Iterable[int], now: datetime) -> dict[int, UserUsage]:
    """user id -> decayed usage, running charge (dispatched and running jobs), share, caps and first group, at
    `now` (three queries; four when some of them are in groups)."""
    user_ids = list(user_ids)
    halflife = settings.DCT_FAIRSHARE_HALFLIFE_SECONDS
    accounts = {a.user_id: a for a in ACCOUNTS.objects(user_ids)}
    first = first_groups(user_ids)
    groups = {g.id: g for g in Group.objects.filter(id__in=set(first.values()))} if first else {}
    weights = billing()
    active: dict[int, list[tuple[float, datetime | None]]] = defaultdict(list)
    gpus_held: dict[int, int] = defaultdict(int)
    for owner_id, cpus, gpus, memory_mb, started, suspended_seconds, suspended_at in ACTIVE_OF.values(user_ids):
        # Time suspended (a desktop's owner was back) is not charged.
        charged_from = charged_start(started, suspended_seconds, suspended_at, now)
        active[owner_id].append((weights.rate(cpus, gpus, memory_mb), charged_from))
        gpus_held[owner_id] += gpus
    found = {}
    defaults = default_caps()
    for uid in user_ids:
        account = accounts.get(uid)
        past = decayed(account.usage, account.usage_at, now, halflife) if account else 0.0
        share = account.share if account else 1.0
        running = running_charge(active[uid], now)
        group = groups.get(first.get(uid, 0))
        caps = account_caps(account, group_caps(group, defaults))
        found[uid] = UserUsage(
            uid, past, running, share, len(active[uid]), gpus_held[uid], caps, group.id if group else None
        )
    return found


def first_groups(user_ids: Iterable[int]) -> dict[int, int]:
    """user id -> the group their jobs charge by default (the first they joined), for those in a group."""
    first: dict[int, int] = {}
    for user_id, group_id in FIRST_GROUPS.values(list(user_ids)):
        first.setdefault(user_id, group_id)
    return first


def teams(found: dict[int, UserUsage], now: datetime) -> dict[int, Team]:
    """user id -> the team they take turns in (`fairshare.Team`: their first group, its usage over its share),
    for the users of `found` in a group (none: no query)."""
    group_ids = {s.group_id for s in found.values() if s.group_id is not None}
    if not group_ids:
        return {}
    by_group = group_teams(group_ids, now)
    return {uid: by_group[s.group_id] for uid, s in found.items() if s.group_id in by_group}


def group_teams(group_ids: Iterable[int], now: datetime) -> dict[int, Team]:
    """group id -> its team: decayed usage plus what the jobs charging it hold now, over its share (two queries)."""
    return {
        gid: group_team(gid, usage, 0.0, group.share) for gid, (group, usage) in group_usages(group_ids, now).items()
    }


def group_usages(group_ids: Iterable[int], now: datetime) -> dict[int, tuple[Group, float]]:
    """group id -> (the group, its decayed usage plus the running charge of the jobs charging it) (two queries)."""
    halflife = settings.DCT_FAIRSHARE_HALFLIFE_SECONDS
    weights = billing()
    groups = list(Group.objects.filter(id__in=list(group_ids)))
    active: dict[int, list[tuple[float, datetime | None]]] = defaultdict(list)
    rows = Job.objects.filter(state__in=ACTIVE_STATES, accounting_group_id__in=[g.id for g in groups]).values_list(
        "accounting_group_id", "request_cpus", "request_gpus", "request_memory_mb", "started_at",
        "suspended_seconds", "suspended_at",
    )  # fmt: skip
    for group_id, cpus, gpus, memory_mb, started, suspended_seconds, suspended_at in rows:
        charged_from = charged_start(started, suspended_seconds, suspended_at, now)
        active[group_id].append((weights.rate(cpus, gpus, memory_mb), charged_from))
    return {g.id: (g, decayed(g.usage, g.usage_at, now, halflife) + running_charge(active[g.id], now)) for g in groups}


def account_caps(account: Account | None, defaults: Caps) -> Caps:
    if account is None:
        return defaults
    return caps_of(defaults, account.max_running_jobs, account.max_running_gpus, account.max_queued_jobs)


def group_caps(group: Group | None, defaults: Caps) -> Caps:
    """The caps of a group's members before their own (`./dct limits --group`): the group's over the settings."""
    if group is None:
        return defaults
    return caps_of(defaults, group.max_running_jobs, group.max_running_gpus, group.max_queued_jobs)


def default_caps() -> Caps:
    """DCT_MAX_RUNNING_JOBS, DCT_MAX_RUNNING_GPUS, DCT_MAX_QUEUED_JOBS (0: no cap)."""
    return caps_of(
        Caps(settings.DCT_MAX_RUNNING_JOBS, settings.DCT_MAX_RUNNING_GPUS, settings.DCT_MAX_QUEUED_JOBS),
        None,
        None,
        None,
    )


def user_caps(user_id: int, groups: list[tuple] | None = None) -> Caps:
    """One user's caps: the settings, their first group's and their own from `./dct limits`; `groups`: their
    `memberships`, when the caller has read them."""
    groups = memberships(user_id) if groups is None else groups
    caps = caps_of(default_caps(), *groups[0][2:]) if groups else default_caps()
    account = ACCOUNT_CAPS.rows(user_id)
    return caps_of(caps, *account[0]) if account else caps


def memberships(user_id: int) -> list[tuple]:
    """One user's groups, first joined first: (group id, name, its max_running_jobs, max_running_gpus,
    max_queued_jobs: its caps on each member, None where unset)."""
    return MEMBERSHIPS.rows(user_id)


def rooms(found: dict[int, UserUsage]) -> dict[int, Room]:
    """user id -> what they may still start under their running caps (only users with such a cap)."""
    return {uid: room(s.caps, s.running_jobs, s.running_gpus) for uid, s in found.items() if s.caps.any_running}


def group_totals() -> dict[int, GroupTotals]:
    """group id -> its caps on all the jobs charging it together and what those hold now, for the groups that
    have such a cap (`./dct limits --group NAME --total-...`): one query a pass, two when any group has one."""
    capped = {gid: (name, jobs or None, gpus or None) for gid, name, jobs, gpus in CAPPED_GROUPS.rows()}
    if not capped:
        return {}
    active = Job.objects.filter(state__in=ACTIVE_STATES, accounting_group_id__in=list(capped))
    held = {
        gid: (runs, holds or 0)
        for gid, runs, holds in active.order_by()
        .values("accounting_group_id")
        .annotate(runs=Count("id"), holds=Sum("request_gpus"))
        .values_list("accounting_group_id", "runs", "holds")
    }
    return {gid: GroupTotals(*capped[gid], *held.get(gid, (0, 0))) for gid in capped}


def group_rooms(totals: dict[int, GroupTotals]) -> dict[int, Room]:
    """group id -> what the jobs charging it may still start under its total caps (`pick_assignments`)."""
    return {gid: t.room() for gid, t in totals.items()}


def billing() -> Billing:
    """The weights of DCT_BILLING (checked at start-up: `checks.check_billing`)."""
    return _billing(settings.DCT_BILLING)


@lru_cache(maxsize=8)
def _billing(text: str) -> Billing:
    return parse_billing(text)


# The queries every scheduling pass makes, compiled once (see fastsql).
ACCOUNTS = CompiledIn(lambda ids: Account.objects.filter(user_id__in=ids))


ACTIVE_OF = CompiledIn(
    lambda ids: Job.objects.filter(state__in=ACTIVE_STATES, owner_id__in=ids).values_list(
        "owner_id",
        "request_cpus",
        "request_gpus",
        "request_memory_mb",
        "started_at",
        "suspended_seconds",
        "suspended_at",
    )
)

# The groups with a cap on all their jobs together (`group_totals`); 0 is no cap, as in ./dct limits.
CAPPED_GROUPS = Compiled(
    lambda: Group.objects.filter(Q(total_running_jobs__gt=0) | Q(total_running_gpus__gt=0)).values_list(
        "id", "name", "total_running_jobs", "total_running_gpus"
    )
)

# One user's groups, first joined first, with their caps on each member (`memberships`).
MEMBERSHIPS = Compiled(
    lambda: (
        Membership.objects.filter(user_id=0)
        .order_by("id")
        .values_list(
            "group_id", "group__name", "group__max_running_jobs", "group__max_running_gpus", "group__max_queued_jobs"
        )
    )
)

# One user's own caps (`./dct limits USER`), when they have an account row.
ACCOUNT_CAPS = Compiled(
    lambda: Account.objects.filter(user_id=0).values_list("max_running_jobs", "max_running_gpus", "max_queued_jobs")
)

# Each user's groups, first joined first (`first_groups`).
FIRST_GROUPS = CompiledIn(
    lambda ids: Membership.objects.filter(user_id__in=ids).order_by("user_id", "id").values_list("user_id", "group_id")
)

# The account's row, locked until the job's end is recorded, where the database computes no decay (see
# `_decay_sql`; compiled once: see fastsql).
LOCKED_ACCOUNT = Compiled(lambda: Account.objects.select_for_update().filter(user_id=0))


def charge_job(
    user_id: int,
    cpus: int,
    wall_seconds: float,
    now: datetime,
    gpus: int = 0,
    memory_mb: int = 0,
    group_id: int | None = None,
) -> None:
    """Add what the job held, weighted (DCT_BILLING), x `wall_seconds` to the user's decayed usage, to today's
    total (`DailyUsage.cpu_seconds` holds billed units: cpu-seconds under the default weights) and to the decayed
    usage of the group it charges (`group_id`, Job.accounting_group)."""
    cost = job_cost(cpus, wall_seconds, gpus, memory_mb)
    # Inside a caller's transaction (a job's end), no savepoint of its own: two statements fewer per job.
    with transaction.atomic(savepoint=False):
        if not _charge_account(user_id, cost, now):  # the user's first job: make the account, then charge it
            Account.objects.get_or_create(user_id=user_id)
            _charge_account(user_id, cost, now)
        # One UPDATE on every day but the first; the account row's lock (taken
        # by the UPDATE above, held to the commit) keeps two charges of one
        # user from both creating the day's row.
        today = {"user_id": user_id, "day": now.date()}
        if not update_rows(DailyUsage, today, {"cpu_seconds": Add(cost), "jobs": Add(1)}):
            DailyUsage.objects.create(user_id=user_id, day=now.date(), cpu_seconds=cost, jobs=1)
        if group_id is not None:
            charge_group(group_id, cost, now)


def job_cost(cpus: int, wall_seconds: float, gpus: int = 0, memory_mb: int = 0) -> float:
    """What a job that held this much for `wall_seconds` is charged, in billed units (DCT_BILLING)."""
    return billing().rate(cpus, gpus, memory_mb) * max(wall_seconds, 0.0)


def charge_statements(user_id: int, cost: float, now: datetime, when: str) -> list[tuple[str, list]]:
    """`charge_job` of `cost` without a group, as PostgreSQL statements for a data-modifying CTE: each acts once
    if the CTE named `when` has a row, not at all if it has none (`transitions.finish_with`).

    The account and today's row are upserted (`INSERT ... ON CONFLICT DO
    UPDATE`): the user's first job makes them in the same statement, and
    two ends of one user at once each add to the row the other wrote.  The
    usage is `fairshare.charge`'s, as `_charge_account` computes it.
    """
    halflife = settings.DCT_FAIRSHARE_HALFLIFE_SECONDS
    quote = connection.ops.quote_name
    account_table, day_table = quote(Account._meta.db_table), quote(DailyUsage._meta.db_table)
    fresh = {f.name: f.get_default() for f in Account._meta.concrete_fields if not f.primary_key}
    fresh.update(user=user_id, usage=charge(0.0, None, now, halflife, cost), usage_at=now)
    account, account_params = insert_select_sql(Account, fresh, when)
    decay = _decay_sql("postgresql", f"{account_table}.")
    at = connection.ops.adapt_datetimefield_value(now)
    account += f' ON CONFLICT ("user_id") DO UPDATE SET "usage" = {decay}, "usage_at" = EXCLUDED."usage_at"'
    day, day_params = insert_select_sql(
        DailyUsage, {"user": user_id, "day": now.date(), "cpu_seconds": cost, "jobs": 1}, when
    )
    day += (
        f' ON CONFLICT ("user_id", "day") DO UPDATE SET "cpu_seconds" = {day_table}."cpu_seconds" + '
        f'EXCLUDED."cpu_seconds", "jobs" = {day_table}."jobs" + EXCLUDED."jobs"'
    )
    return [(account, [*account_params, at, halflife, cost]), (day, day_params)]


def _charge_account(user_id: int, cost: float, now: datetime) -> bool:
    """`fairshare.charge` of the user's account, in one UPDATE that decays the usage in the database (no read,
    no lock held from a SELECT ... FOR UPDATE to the commit); False when the user has no account yet."""
    halflife = settings.DCT_FAIRSHARE_HALFLIFE_SECONDS
    decay = _decay_sql(connection.vendor)
    if decay is None:  # a database that computes no decay here: read it under the row's lock, write it back
        found = LOCKED_ACCOUNT.objects(user_id)
        if not found:
            return False
        usage = charge(found[0].usage, found[0].usage_at, now, halflife, cost)
        return bool(update_rows(Account, {"user_id": user_id}, {"usage": usage, "usage_at": now}))
    at = connection.ops.adapt_datetimefield_value(now)
    table = connection.ops.quote_name(Account._meta.db_table)
    with fastsql.cursor() as cursor:
        cursor.execute(
            f'UPDATE {table} SET "usage" = {decay}, "usage_at" = %s WHERE "user_id" = %s',  # noqa: S608
            [at, halflife, cost, at, user_id],
        )
        return cursor.rowcount > 0


def _decay_sql(vendor: str, table: str = "") -> str | None:
    """The SQL of `fairshare.charge(usage, usage_at, NOW, HALFLIFE, COST)` (placeholders in that order), or
    None for a database it is not written for.  `table`: the columns' table and a dot, where they need one.

    PostgreSQL's is the same arithmetic in the same order (the epoch of an
    interval is exact, `power` is C's `pow` as Python's `math.pow` is), so
    the usage is the one Python would compute; SQLite calls that very Python
    function (`register_sqlite_functions`).
    """
    if vendor == "postgresql":
        usage, usage_at = f'{table}"usage"', f'{table}"usage_at"'
        return (
            f"(CASE WHEN {usage_at} IS NULL OR {usage} <= 0 THEN GREATEST({usage}, 0) ELSE {usage} * POWER(0.5, "
            f"GREATEST(EXTRACT(EPOCH FROM (%s::timestamptz - {usage_at}))::float8, 0) / %s) END) + GREATEST(%s, 0)"
        )
    if vendor == "sqlite":
        return 'dct_charge("usage", "usage_at", %s, %s, %s)'
    return None


def register_sqlite_functions(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    """`dct_charge` on each new SQLite connection (connection_created): `fairshare.charge` on its columns."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("dct_charge", 5, _sqlite_charge, deterministic=True)


def _sqlite_charge(usage: float, since: str | None, now: str, halflife: float, cost: float) -> float:
    # Both datetimes as Django writes them to SQLite (naive UTC text): their difference is the aware one's.
    start = datetime.fromisoformat(since) if since else None
    return charge(usage, start, datetime.fromisoformat(now), halflife, cost)


def charge_group(group_id: int, cost: float, now: datetime) -> None:
    """Add `cost` billed units to the group's decayed usage and today's total (its row locked: members' jobs
    end at once, and the lock keeps two of them from both creating the day's row)."""
    group = Group.objects.select_for_update().filter(id=group_id).first()
    if group is None:
        return  # gone meanwhile: its members' usage is charged all the same
    usage = charge(group.usage, group.usage_at, now, settings.DCT_FAIRSHARE_HALFLIFE_SECONDS, cost)
    update_rows(Group, {"id": group_id}, {"usage": usage, "usage_at": now})
    today = {"group_id": group_id, "day": now.date()}
    if not update_rows(DailyGroupUsage, today, {"cpu_seconds": Add(cost), "jobs": Add(1)}):
        DailyGroupUsage.objects.create(group_id=group_id, day=now.date(), cpu_seconds=cost, jobs=1)
