"""SQL written out, or compiled once, for the statements every job and every scheduling pass makes.

`update_rows(Job, {"id": 5, "state": "running"}, {"state": "succeeded"})` is
`Job.objects.filter(id=5, state="running").update(state="succeeded")`, but
compiling the ORM's statement costs about half a millisecond, thirty times
running it on SQLite; a node makes a handful of these for every job it runs
(start, finish, charge), so they add up to a large share of a short job's
cost.  Values are adapted by their model fields, as the ORM would.
`Compiled` keeps the SQL of a queryset whose filters never change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, models


@dataclass(frozen=True)
class Add:
    """A value that adds to the column instead of replacing it (`F(column) + amount`)."""

    amount: float | int


def update_rows(
    model: type[models.Model],
    where: dict[str, object],
    values: dict[str, object],
    extra_where: tuple[str, list] = ("", []),
) -> int:
    """UPDATE `model` SET `values` WHERE each `where` field equals its value, and `extra_where`; the row count."""
    meta = model._meta
    fields = {name: meta.get_field(name) for name in (*where, *values)}
    quote = connection.ops.quote_name
    sets, params = [], []
    for name, value in values.items():
        column = quote(fields[name].column)
        if isinstance(value, Add):
            sets.append(f"{column} = {column} + %s")
            params.append(value.amount)
        else:
            sets.append(f"{column} = %s")
            params.append(fields[name].get_db_prep_save(value, connection))
    conditions = [f"{quote(fields[name].column)} = %s" for name in where]
    params += [fields[name].get_db_prep_value(value, connection) for name, value in where.items()]
    if extra_where[0]:
        conditions.append(extra_where[0])
        params += extra_where[1]
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(sets)} WHERE {' AND '.join(conditions)}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


class Compiled:
    """A queryset of fixed shape, compiled to SQL once per process and database.

    Its filters are constants, or placeholders (`filter(id=0)`) whose values
    each call gives anew, in the order the SQL takes them.  `rows()` runs it
    and returns the database's own values (use it for integer and text
    columns); `objects()` returns model instances, every field converted as
    the ORM would (no select_related: the SQL is the model's own row).
    """

    def __init__(self, build: Callable[[], models.QuerySet]) -> None:
        self.build = build
        self._compiled: dict[str, tuple[models.QuerySet, str, tuple]] = {}

    def _sql(self, params: tuple) -> tuple[models.QuerySet, str, tuple]:
        found = self._compiled.get(connection.vendor)
        if found is None:
            queryset = self.build()
            sql, fixed = queryset.query.sql_with_params()
            found = self._compiled[connection.vendor] = (queryset, sql, tuple(fixed))
        queryset, sql, fixed = found
        if params and len(params) != len(fixed):
            raise ValueError(f"this query takes {len(fixed)} parameters, not {len(params)}")
        return queryset, sql, params or fixed

    def rows(self, *params: object) -> list[tuple]:
        _, sql, values = self._sql(params)
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            return cursor.fetchall()

    def objects(self, *params: object) -> list[models.Model]:
        queryset, sql, values = self._sql(params)
        return list(queryset.model.objects.raw(sql, values))
