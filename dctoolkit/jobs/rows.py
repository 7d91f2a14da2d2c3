"""Jobs as plain rows: what an answer about thousands of jobs at once reads instead of model instances.

A cancel, hold or release of a 10,000-job batch answers every changed job in its new state.  Made as
model instances (and their owners, joined), the jobs cost more than the UPDATE many times over; read
as value rows (`values_list`), with each owner's name and each node's name read once, not once per
job, they cost a fraction.  A `JobRow` has the attributes the job object's serializer and the
reasons read (the model's column names, `owner.username`, `node.name`), so that the same code shapes
either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.db.models.sql.constants import MULTI

from dctoolkit.jobs.models import Job
from dctoolkit.lib.collector import collector_paused
from dctoolkit.nodes.models import Node

# Columns no answer about a job shows nor any of its reasons reads (a waiting job's reason reads retry_at,
# so it is read): not read back for 10,000 jobs (each column a row costs its fetch, its conversion and its
# dict entry: reading 47 of 57 cut about a fifth of the read-back).
NOT_READ = ("inputs", "environment", "output", "streams", "email", "network", "notified", "dispatched_at",
            "output_remaps", "acted_at", "success_exit_code", "retry_until", "retry_delay_seconds",
            "periodic_policy", "hold_code", "hold_subcode", "held_at", "num_holds")  # fmt: skip
ROW_FIELDS = tuple(f.attname for f in Job._meta.concrete_fields if f.name not in NOT_READ)


class Named:
    """The one attribute of a related row an answer reads (a user's `username`, a node's `name`)."""

    __slots__ = ("name", "username")

    def __init__(self, name: str) -> None:
        self.name = self.username = name


class JobRow:
    """One job's columns (ROW_FIELDS, as attributes), its owner and its node (`Named`, or None)."""

    owner: Named
    node: Named | None
    dag_node = None  # its name comes from the answer's context (`dag_node_names`), read for all at once

    def __init__(self, values: dict[str, Any], owner: Named, node: Named | None) -> None:
        values["owner"], values["node"] = owner, node
        self.__dict__ = values

    @property
    def pk(self) -> int:
        return self.id

    def __getattr__(self, name: str) -> Any:  # only for the names not read (NOT_READ): say which, not None
        raise AttributeError(
            f"JobRow has no {name!r}: jobs.rows.NOT_READ leaves it out; add it there if an answer needs it"
        )


def job_rows(jobs: QuerySet[Job]) -> list[JobRow]:
    """The jobs of `jobs` in id order as rows: one query for the jobs, one each for their owners' and nodes' names."""
    with collector_paused():  # 10,000 rows of dicts and lists, none of them garbage
        values = _values(jobs.order_by("id").values_list(*ROW_FIELDS))
        at = {name: i for i, name in enumerate(ROW_FIELDS)}
        owners = _names(get_user_model().objects.all(), "username", {v[at["owner_id"]] for v in values})
        nodes = _names(Node.objects.all(), "name", {v[at["node_id"]] for v in values} - {None})
        rows = []
        for value in values:
            node_id = value[at["node_id"]]
            rows.append(JobRow(dict(zip(ROW_FIELDS, value, strict=True)), owners[value[at["owner_id"]]],
                               nodes.get(node_id) if node_id is not None else None))  # fmt: skip
    return rows


def _values(rows: QuerySet) -> list[list[Any]]:
    """What `rows` (a values_list) gives, converted by the same converters, each distinct stored value once per
    column: a batch's jobs share most of theirs (one submit time, no start, '[]' arguments), and converting
    (parsing SQLite's time text, decoding JSON) cost more than reading.  The JSON values are shared between
    rows that stored the same text: rows are answers, never changed."""
    compiler = rows.query.get_compiler(using=rows.db)
    chunks = compiler.execute_sql(MULTI)
    converters = compiler.get_converters([s[0] for s in compiler.select[: compiler.col_count]])
    values = [list(row) for chunk in chunks for row in chunk]
    for pos, (convs, expression) in converters.items():
        seen: dict[Any, Any] = {}
        for row in values:
            stored = row[pos]
            try:
                row[pos] = seen[stored]
            except KeyError:
                row[pos] = seen[stored] = _convert(stored, convs, expression, compiler.connection)
            except TypeError:  # not hashable (PostgreSQL's JSON arrives decoded)
                row[pos] = _convert(stored, convs, expression, compiler.connection)
    return values


def _convert(value: Any, convs: list, expression: Any, connection: Any) -> Any:
    for convert in convs:
        value = convert(value, expression, connection)
    return value


def _names(objects: QuerySet, column: str, ids: Iterable[int]) -> dict[int, Named]:
    ids = sorted(ids)
    found: dict[int, Named] = {}
    for first in range(0, len(ids), 900):  # ids per IN (...): below SQLite's oldest limit (999)
        found.update(
            (i, Named(name)) for i, name in objects.filter(id__in=ids[first : first + 900]).values_list("id", column)
        )
    return found
