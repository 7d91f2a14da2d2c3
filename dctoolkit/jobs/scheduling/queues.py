"""Each user's queued jobs in the order they are served (higher `priority` first, then oldest first), read only
as deep as one pass can place (plain lists for the planner)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Exists, OuterRef

from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling.matching import wants_from
from dctoolkit.jobs.scheduling.policy import QueuedJob
from dctoolkit.lib import fastsql
from dctoolkit.lib.fastsql import Compiled

log = logging.getLogger(__name__)


# At most this many of each user's queued jobs are read per pass: a pass can
# place at most one job per free cpu, so reading more is wasted work.
MAX_HEADS_PER_USER = 500


@dataclass
class Heads:
    """Each user's oldest queued jobs as read so far, and the users who may have more (up to `limit` each).

    A pass places at most one job per free cpu, spread over the users in
    fair-share order, so most users' queues are read only a few jobs deep;
    reading every user's queue `free cpus` deep would read up to
    users x free cpus rows.  The planner says whose jobs it ran out of
    (`policy.Picks.wants_more`); `read_more` reads deeper for them.
    """

    jobs: dict[int, list[QueuedJob]]
    more: set[int]
    limit: int

    def read_more(self, owner_ids: Iterable[int]) -> None:
        """Read as many again of these users' queued jobs (at least one, at most to `limit`), one query per batch."""
        known = {uid: len(self.jobs[uid]) for uid in owner_ids if uid in self.more}
        wanted = {uid: min(max(n, 1), self.limit - n) for uid, n in known.items()}
        after = {uid: (self.jobs[uid][-1].priority, self.jobs[uid][-1].id) for uid in wanted if self.jobs[uid]}
        got = read_heads(wanted, after)
        for uid, count in wanted.items():
            self.jobs[uid] += got.get(uid, [])
            self.note_read(uid, len(got.get(uid, [])), count)

    def note_read(self, owner_id: int, got: int, asked: int) -> None:
        """`got` of the `asked` jobs were read for `owner_id`: fewer means there are no more."""
        if got < asked or len(self.jobs[owner_id]) >= self.limit:
            self.more.discard(owner_id)


# Owners per UNION query (not on PostgreSQL: `read_heads`): SQLite allows 500 arms in one compound SELECT.
HEADS_BATCH = 200


# In QueuedJob's order; `placement` (the job's machine choice) becomes its `wants`.
QUEUED_FIELDS = (
    "id",
    "owner_id",
    "request_cpus",
    "request_memory_mb",
    "request_gpus",
    "pinned_node",
    "container",
    "placement",
    "priority",
    "accounting_group_id",
)


def queue_owners() -> list[int]:
    """Ids of the users with queued jobs.

    One probe of the (state, owner, -priority, id) index per user account, rather than
    a DISTINCT over every queued job: cheap with a long queue.
    """
    return [row[0] for row in QUEUE_OWNERS.rows()]


QUEUE_OWNERS = Compiled(
    lambda: (
        get_user_model()
        .objects.filter(Exists(Job.objects.filter(state=JobState.QUEUED, owner_id=OuterRef("pk"))))
        .values_list("id")
    )
)


def queue_heads(free_cpus: int) -> Heads:
    """Each user's oldest queued jobs, about as deep as one pass needs, and who may have more."""
    owners = queue_owners()
    limit = min(free_cpus, MAX_HEADS_PER_USER)
    if not owners:
        return Heads({}, set(), limit)
    # Equal shares of the free cpus, and one more to see past the last placed.
    first = min(-(-free_cpus // len(owners)) + 1, limit)
    heads = Heads({owner_id: [] for owner_id in owners}, set(owners), limit)
    got = read_heads(dict.fromkeys(owners, first))
    for owner_id in owners:
        heads.jobs[owner_id] = got.get(owner_id, [])
        heads.note_read(owner_id, len(heads.jobs[owner_id]), first)
    return heads


def read_heads(
    wanted: Mapping[int, int], after: Mapping[int, tuple[int, int]] | None = None
) -> dict[int, list[QueuedJob]]:
    """owner id -> their first `wanted[owner]` queued jobs in serving order (higher priority, then lower id;
    after `after[owner]`, a (priority, id) already read).

    One indexed LIMIT query per owner, all in one statement: on PostgreSQL a
    LATERAL join over the owners given as arrays (`LATERAL_HEADS`), elsewhere
    a UNION ALL of one arm per owner, one statement per HEADS_BATCH, written
    out because the ORM compiles each arm separately (a query per owner costs
    a round trip each).
    """
    after = after or {}
    owner_ids = [uid for uid, count in wanted.items() if count > 0]
    starts = [after.get(uid, (FIRST_PRIORITY, 0)) for uid in owner_ids]
    heads: dict[int, list[QueuedJob]] = defaultdict(list)
    with fastsql.cursor() as cursor:
        for sql, params in _heads_statements(owner_ids, [wanted[uid] for uid in owner_ids], starts):
            cursor.execute(sql, params)
            for row in cursor.fetchall():
                # `placement` is JSON text (SQLite) or a dict (PostgreSQL); most jobs ask nothing: '{}'.
                job_id, owner_id, cpus, memory_mb, gpus, node, container, placement, priority, group_id = row
                wants = wants_from(placement)
                heads[owner_id].append(
                    QueuedJob(job_id, owner_id, cpus, memory_mb, gpus, node, container, wants, priority, group_id)
                )
    for jobs in heads.values():
        jobs.sort(key=serving_order)
    return heads


def _heads_statements(
    owner_ids: list[int], counts: list[int], starts: list[tuple[int, int]]
) -> Iterator[tuple[str, list]]:
    """The statements (SQL, parameters) that read each owner's `count` queued jobs after `start`."""
    table = connection.ops.quote_name(Job._meta.db_table)
    if not owner_ids:
        return
    if connection.vendor == "postgresql":
        # PostgreSQL plans each arm of a UNION ALL anew, every time: about 0.5 ms an arm, 100 ms for 200
        # (the arms run in 12); a LATERAL join is planned once, as one index scan per owner.
        columns = ", ".join(f"j.{name}" for name in QUEUED_FIELDS)
        yield (
            f"SELECT {columns} FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "  # noqa: S608
            f"AS w(owner_id, n, priority, last) CROSS JOIN LATERAL (SELECT * FROM {table} j "
            "WHERE j.state = %s AND j.owner_id = w.owner_id "
            "AND (j.priority < w.priority OR (j.priority = w.priority AND j.id > w.last)) "
            "ORDER BY j.priority DESC, j.id LIMIT w.n) j",
            [owner_ids, counts, [p for p, _ in starts], [i for _, i in starts], JobState.QUEUED.value],
        )
        return
    select = f"SELECT {', '.join(QUEUED_FIELDS)} FROM {table}"  # noqa: S608 (names from the model)
    # After (p, i) in serving order: a lower priority, or the same one and a higher id (index job_state_owner_priority).
    later = "(priority < %s OR (priority = %s AND id > %s))"
    arm = f"SELECT * FROM ({select} WHERE state = %s AND owner_id = %s AND {later} ORDER BY priority DESC, id LIMIT %s) AS h"  # noqa: S608, E501
    for first in range(0, len(owner_ids), HEADS_BATCH):
        batch = range(first, min(first + HEADS_BATCH, len(owner_ids)))
        params: list[int | str] = []
        for k in batch:
            priority, last = starts[k]
            params += [JobState.QUEUED.value, owner_ids[k], priority, priority, last, counts[k]]
        yield " UNION ALL ".join(f"{arm}{i}" for i in range(len(batch))), params


def serving_order(job: QueuedJob) -> tuple[int, int]:
    """How a user's own queued jobs are ordered: higher priority first, then the older (lower id)."""
    return (-job.priority, job.id)


# Above any priority a job can have (keys.MAX_PRIORITY): "after" it is every job.
FIRST_PRIORITY = 2**31
