"""Many new rows of one model in one `executemany` (one `COPY` on PostgreSQL), each distinct value adapted once.

`bulk_create` builds a model instance per row and prepares every one of its
columns per row (57 for a Job): most of a 100,000-job submission's time,
though the rows of a `queue N` file differ in a few columns.  Here every
column starts from the model's default, prepared once (as `bulk_create`
would: `pre_save`, then `get_db_prep_save`), and a row's given values are
prepared through a cache per column, keyed by the value itself (by its
`repr` for a JSON field's lists and dicts), so a value repeated down the
batch is adapted once.  On PostgreSQL the rows go in one `COPY`, a JSON
value as its text (serialised once, not again per row by the driver).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from django.db import connection, models
from django.db.models import NOT_PROVIDED

# Rows per executemany call: bounds the driver's buffers (MySQL's client makes one multi-row INSERT of them).
CHUNK = 2000


class RowWriter:
    """Rows of `model`: every concrete column but the primary key, from its default unless given."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        layout = _layout(model, connection.vendor)
        self.fields, self.index, self.base, self.is_json, self.plain_int = layout[:5]
        self.jsonb = connection.vendor == "postgresql"
        self.used = list(layout.used)
        self.caches: list[dict[Any, Any]] = [{} for _ in self.fields]

    def _prep(self, field: models.Field, value: Any) -> Any:
        return _prep(field, value, self.jsonb)

    def row(self, values: Mapping[str, Any]) -> list[Any]:
        """The row for these attname -> value (the others: their defaults), as a list of prepared values."""
        row = list(self.base)
        for name, value in values.items():
            self.set(row, name, value)
        return row

    def set(self, row: list[Any], name: str, value: Any) -> None:
        """Put the value of column `name` into a row made by `row`."""
        i = self.index[name]
        if self.plain_int[i] and value.__class__ is int:
            row[i] = value  # an integer column's int goes as it is (a process number: a new value each row)
            self.used[i] = True
            return
        key = repr(value) if self.is_json[i] else (value.__class__, value)
        cache = self.caches[i]
        try:
            row[i] = cache[key]
        except KeyError:
            row[i] = cache[key] = self._prep(self.fields[i], value)
            if row[i] is not None:
                self.used[i] = True

    def insert(self, rows: Iterable[list[Any]]) -> None:
        """INSERT the rows (in the caller's transaction)."""
        rows = list(rows)
        sql, columns, pick = self._statement()
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            if self.jsonb:  # PostgreSQL: one COPY (psycopg 3), the JSON columns' text read as jsonb
                copy_sql = f"COPY {quote(self.model._meta.db_table)} ({columns}) FROM STDIN"
                with cursor.cursor.copy(copy_sql) as copy:
                    for row in rows:
                        copy.write_row(pick(row))
                return
            for start in range(0, len(rows), CHUNK):
                cursor.executemany(sql, list(map(pick, rows[start : start + CHUNK])))

    def insert_one(self, row: list[Any]) -> int:
        """INSERT one row (in the caller's transaction); its primary key, from the same statement where the
        database returns it (PostgreSQL, SQLite), else from the driver (MySQL, MariaDB)."""
        sql, _, pick = self._statement()
        pk = self.model._meta.pk
        assert pk is not None  # every concrete model has one
        with connection.cursor() as cursor:
            if connection.features.can_return_columns_from_insert:
                cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(pk.column)}", pick(row))
                return cursor.fetchone()[0]
            cursor.execute(sql, pick(row))
            return connection.ops.last_insert_id(cursor, self.model._meta.db_table, pk.column)

    def _statement(self) -> tuple[str, str, Callable[[list[Any]], tuple]]:
        """The INSERT of the columns some row gives (`used`), those columns, and what picks them from a row."""
        keep = [i for i, used in enumerate(self.used) if used]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(self.fields[i].column) for i in keep)
        marks = ", ".join(["%s"] * len(keep))
        sql = f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608 (the model's names)
        pick = operator.itemgetter(*keep)
        return sql, columns, pick


def _prep(field: models.Field, value: Any, jsonb: bool) -> Any:
    prepared = field.get_db_prep_save(value, connection)
    if jsonb and isinstance(field, models.JSONField) and prepared is not None:
        return prepared.dumps(prepared.obj)  # psycopg's Jsonb: its text, cast in the statement
    return prepared


class _Layout(NamedTuple):
    """What a RowWriter of one model knows before its first row, the same for every one on a database engine."""

    fields: list[models.Field]
    positions: dict[str, int]  # attname -> its place in a row
    base: list[Any]  # each column's default, prepared (immutable values: text, numbers, None)
    is_json: list[bool]
    plain_int: list[bool]
    used: tuple[bool, ...]


@lru_cache(maxsize=16)
def _layout(model: type[models.Model], vendor: str) -> _Layout:
    """`model`'s columns and their prepared defaults, worked out once per process and engine (57 columns
    for a Job: a millisecond and a half, more than the rest of a one-job submission's INSERT)."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    for f in fields:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            raise ValueError(f"{model.__name__}.{f.name}: a column set at save time; give it in each row")
    jsonb = vendor == "postgresql"
    template = model()
    base = [_prep(f, f.pre_save(template, True), jsonb) for f in fields]
    # Columns some row gives a value to (not NULL): the others, when they may be NULL and the database has no
    # default for them, are left out of the INSERT (about half of a Job's), which fills them with NULL.
    used = tuple(
        value is not None or not f.null or f.db_default is not NOT_PROVIDED
        for f, value in zip(fields, base, strict=True)
    )
    plain_int = [isinstance(f, models.IntegerField) and _prep(f, 12345, jsonb) == 12345 for f in fields]
    return _Layout(
        fields, {f.attname: i for i, f in enumerate(fields)}, base, [isinstance(f, models.JSONField) for f in fields],
        plain_int, used,
    )  # fmt: skip
