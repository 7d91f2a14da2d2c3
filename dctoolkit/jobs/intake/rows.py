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
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connection, models
from django.db.models import NOT_PROVIDED

# Rows per executemany call: bounds the driver's buffers (MySQL's client makes one multi-row INSERT of them).
CHUNK = 2000


class RowWriter:
    """Rows of `model`: every concrete column but the primary key, from its default unless given."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        for f in self.fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                raise ValueError(f"{model.__name__}.{f.name}: a column set at save time; give it in each row")
        self.index = {f.attname: i for i, f in enumerate(self.fields)}
        template = model()
        self.jsonb = connection.vendor == "postgresql"
        self.base = [self._prep(f, f.pre_save(template, True)) for f in self.fields]
        self.caches: list[dict[Any, Any]] = [{} for _ in self.fields]
        self.is_json = [isinstance(f, models.JSONField) for f in self.fields]
        # Columns some row gives a value to (not NULL): the others, when they may be NULL and the database has no
        # default for them, are left out of the INSERT (about half of a Job's), which fills them with NULL.
        self.used = [
            value is not None or not f.null or f.db_default is not NOT_PROVIDED
            for f, value in zip(self.fields, self.base, strict=True)
        ]
        self.plain_int = [isinstance(f, models.IntegerField) and self._prep(f, 12345) == 12345 for f in self.fields]

    def _prep(self, field: models.Field, value: Any) -> Any:
        prepared = field.get_db_prep_save(value, connection)
        if self.jsonb and isinstance(field, models.JSONField) and prepared is not None:
            return prepared.dumps(prepared.obj)  # psycopg's Jsonb: its text, cast in the statement
        return prepared

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
        keep = [i for i, used in enumerate(self.used) if used]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(self.fields[i].column) for i in keep)
        marks = ", ".join(["%s"] * len(keep))
        sql = f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608 (the model's names)
        pick = operator.itemgetter(*keep)
        with connection.cursor() as cursor:
            if self.jsonb:  # PostgreSQL: one COPY (psycopg 3), the JSON columns' text read as jsonb
                copy_sql = f"COPY {quote(self.model._meta.db_table)} ({columns}) FROM STDIN"
                with cursor.cursor.copy(copy_sql) as copy:
                    for row in rows:
                        copy.write_row(pick(row))
                return
            for start in range(0, len(rows), CHUNK):
                cursor.executemany(sql, list(map(pick, rows[start : start + CHUNK])))
