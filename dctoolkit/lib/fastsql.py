"""SQL written out, or compiled once, for the statements every job and every scheduling pass makes.

`update_rows(Job, {"id": 5, "state": "running"}, {"state": "succeeded"})` is
`Job.objects.filter(id=5, state="running").update(state="succeeded")`, but
compiling the ORM's statement costs about half a millisecond, thirty times
running it on SQLite; a node makes a handful of these for every job it runs
(start, finish, charge), so they add up to a large share of a short job's
cost.  Values are adapted by their model fields, as the ORM would.
`Compiled` keeps the SQL of a queryset whose filters never change.
`reuse_connection` and `retry_if_gone` spare the health check (`SELECT 1`)
a kept connection would otherwise get before every task.  `cursor()` is
`connection.cursor()` whose statements PostgreSQL prepares once per
connection (see there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from django.db import InterfaceError, OperationalError, connection, connections, models
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

# The model a Compiled's queryset selects, so that `objects()` returns that model's instances to the type checker.
M = TypeVar("M", bound=models.Model)
T = TypeVar("T")


def reuse_connection() -> None:
    """`close_old_connections()` without the health check it asks for before the next statement.

    A connection that erred or outlived CONN_MAX_AGE is closed as before.
    One whose link died unseen (the database restarted) fails on its first
    statement instead of on a `SELECT 1` sent before it: a caller whose
    first statement may be sent again wraps it in `retry_if_gone`, the
    others fail as they would have had the link died a moment later.
    """
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
        # Django's own flag (not in django-stubs): the check is done, by the first statement.
        conn.health_check_done = True  # type: ignore[attr-defined]


def cursor() -> CursorWrapper:
    """`connection.cursor()`, whose statements PostgreSQL parses and plans once per connection and text.

    Django's psycopg 3 cursors bind on the client (every value written into
    the statement's text), so the server parses and plans each statement
    anew: for the node's start (an UPDATE of a 16-index table returning its
    70 columns) that was more than half of the backend's CPU.  On PostgreSQL
    this cursor binds on the server and prepares every statement it runs
    (psycopg keeps the last `prepared_max` per connection, 100 by default);
    use it for this module's fixed statements, whose texts are few (values
    are parameters).  Elsewhere, or where prepared statements are switched
    off (`prepare_threshold` None in the database's OPTIONS, e.g. behind
    a pooler that cannot keep them: DCT_DB_PREPARE=0), it is the plain cursor.
    """
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        return connection.cursor()
    with connection.wrap_database_errors:
        # Django's wrapper (execute wrappers, its error classes) around psycopg's own cursor; where statements
        # are logged (DEBUG, CaptureQueriesContext), with their values written in as Django's own cursor has them.
        prepared = _preparing_cursor()(raw)
        connection.validate_thread_sharing()
        return _LoggedCursor(prepared, connection) if connection.queries_logged else CursorWrapper(prepared, connection)


class _LoggedCursor(CursorDebugWrapper):
    """Django's logging cursor, which would log a statement bound on the server with its `$1` marks (or not
    at all): the statement is logged with its values written in, as a client-bound one is."""

    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        if use_last_executed_query and sql is not None:
            with contextlib.suppress(Exception):  # a value psycopg cannot write in: logged as Django would
                sql, use_last_executed_query = connection.ops.compose_sql(sql, params), False
        return super().debug_sql(sql, params, use_last_executed_query, many)


_cursor_class: list[type] = []


def _preparing_cursor() -> type:
    # Django's server-binding cursor (psycopg's, with Django's callproc), preparing each statement on first use;
    # made once, imported late (only PostgreSQL needs psycopg).
    if not _cursor_class:
        from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

        class Preparing(ServerBindingCursor):
            def execute(self, query, params=None, *, prepare=None, binary=None):
                return super().execute(query, params, prepare=True, binary=binary)

        _cursor_class.append(Preparing)
    return _cursor_class[0]


def update_returns_rows() -> bool:
    """True when this database's UPDATE takes a RETURNING clause (PostgreSQL, SQLite 3.35 and later; not
    MySQL nor MariaDB), so that a caller needs no read-back of what it changed."""
    return connection.vendor in ("postgresql", "sqlite") and bool(connection.features.can_return_columns_from_insert)


def retry_if_gone(read: Callable[[], T]) -> T:
    """`read()`; once more on a new connection when the kept one turned out dead (outside a transaction)."""
    try:
        return read()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        connection.close()
        return read()


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
    sql, params = update_sql(model, where, values, extra_where)
    with cursor() as cursor_:
        cursor_.execute(sql, params)
        return cursor_.rowcount


def update_sql(
    model: type[models.Model],
    where: dict[str, object],
    values: dict[str, object],
    extra_where: tuple[str, list] = ("", []),
) -> tuple[str, list]:
    """The SQL and parameters of `update_rows(model, where, values, extra_where)`, not run."""
    meta = model._meta
    # Any: get_field() is typed as any field or relation; these are the model's own columns (no relations).
    fields: dict[str, Any] = {name: meta.get_field(name) for name in (*where, *values)}
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
    return f"UPDATE {quote(meta.db_table)} SET {', '.join(sets)} WHERE {' AND '.join(conditions)}", params  # noqa: S608


def insert_row(model: type[models.Model], values: dict[str, object]) -> None:
    """`model.objects.create(**values)` for a model with no field set at save time, without the instance: one
    INSERT of `values` (by field name, adapted by their fields); the columns not given take the database's
    default or NULL, so give every column without one."""
    meta = model._meta
    quote = connection.ops.quote_name
    # Any: as in update_sql.
    fields: list[Any] = [meta.get_field(name) for name in values]
    columns = ", ".join(quote(f.column) for f in fields)
    params = [f.get_db_prep_save(value, connection) for f, value in zip(fields, values.values(), strict=True)]
    marks = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks})", params)  # noqa: S608


def insert_select_sql(model: type[models.Model], values: dict[str, object], source: str) -> tuple[str, list]:
    """`INSERT INTO model (columns) SELECT values FROM source`: one row of `values` (adapted by their fields) for
    each row `source` (a table or a CTE's name) has, none when it has none; the SQL and its parameters."""
    meta = model._meta
    quote = connection.ops.quote_name
    # Any: as in update_sql.
    fields: list[Any] = [meta.get_field(name) for name in values]
    columns = ", ".join(quote(f.column) for f in fields)
    # Each value cast to its column's type: a SELECT's NULL or quoted text has none the INSERT would take.
    marks = ", ".join(f"CAST(%s AS {f.cast_db_type(connection)})" for f in fields)
    params = [f.get_db_prep_save(value, connection) for f, value in zip(fields, values.values(), strict=True)]
    return f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {marks} FROM {source}", params  # noqa: S608


@dataclass
class _Statement:
    sql: str
    fixed: tuple
    model: type[models.Model]
    attnames: list[str]  # of the selected columns, when they are the model's own fields
    converters: list[tuple[int, list, object]]  # (column, converter functions, expression)


class Compiled(Generic[M]):
    """A queryset of fixed shape, compiled to SQL once per process and database.

    Its filters are constants, or placeholders (`filter(id=0)`) whose values
    each call gives anew, in the order the SQL takes them.  `rows()` runs it
    and returns the database's own values (use it for integer and text
    columns); `values()` converts each column as the ORM would (datetimes,
    JSON); `objects()` returns model instances (no select_related: the SQL is
    the model's own row), built the way the ORM builds them, without a
    RawQuerySet's per-call column mapping.
    """

    def __init__(self, build: Callable[[], models.QuerySet[M, Any]]) -> None:
        self.build = build
        self._compiled: dict[str, _Statement] = {}

    def _statement(self) -> _Statement:
        found = self._compiled.get(connection.vendor)
        if found is None:
            queryset = self.build()
            compiler = queryset.query.get_compiler(connection=connection)
            sql, fixed = compiler.as_sql()
            columns = [expression for expression, _, _ in compiler.select]
            converters = compiler.get_converters(columns)
            attnames = [getattr(getattr(c, "target", None), "attname", "") for c in columns]
            found = _Statement(
                sql,
                tuple(fixed),
                queryset.model,
                attnames,
                [(i, functions, expression) for i, (functions, expression) in converters.items()],
            )
            self._compiled[connection.vendor] = found
        return found

    def _run(self, params: tuple) -> tuple[_Statement, list[tuple]]:
        statement = self._statement()
        if params and len(params) != len(statement.fixed):
            raise ValueError(f"this query takes {len(statement.fixed)} parameters, not {len(params)}")
        with cursor() as found:
            found.execute(statement.sql, params or statement.fixed)
            return statement, found.fetchall()

    def rows(self, *params: object) -> list[tuple]:
        return self._run(params)[1]

    def values(self, *params: object) -> list[tuple]:
        statement, rows = self._run(params)
        return _converted(statement, rows)

    def values_within(self, outer: str, after: Sequence[Any] = ()) -> list[tuple]:
        """Rows of `outer`, a statement written out around this query (`{inner}` in it: this query's SQL,
        as a subquery; its own parameters, then `after`); the first columns converted as `values()` does.

        For a read that joins a compiled queryset to SQL the ORM cannot write as cheaply (one round trip
        instead of two)."""
        statement = self._statement()
        with cursor() as found:
            found.execute(outer.format(inner=statement.sql), [*statement.fixed, *after])
            rows = found.fetchall()
        return _converted(statement, rows)

    def objects(self, *params: object) -> list[M]:
        return self.objects_from(self._run(params)[1])

    def returning(self) -> str:
        """The columns this queryset selects, unqualified, as an UPDATE's RETURNING clause names them (for a
        queryset of the model's own row; `objects_from` makes its instances of what it returns)."""
        statement = self._statement()
        columns = {field.attname: field.column for field in statement.model._meta.concrete_fields}
        return ", ".join(connection.ops.quote_name(columns[attname]) for attname in statement.attnames)

    def objects_from(self, rows: list[tuple]) -> list[M]:
        """Instances of `rows` as the database gave them in this queryset's columns (its SELECT, `returning`)."""
        statement = self._statement()
        db = connection.alias
        # statement.model is the queryset's model, which is M.
        return [cast(M, statement.model.from_db(db, statement.attnames, row)) for row in _converted(statement, rows)]


def _converted(statement: _Statement, rows: list[tuple]) -> list[tuple]:
    # Each column converted as the ORM would (datetimes, JSON).
    if not statement.converters:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for i, functions, expression in statement.converters:
            for convert in functions:
                values[i] = convert(values[i], expression, connection)
        converted.append(tuple(values))
    return converted


class CompiledIn(Generic[M]):
    """A Compiled whose queryset has one `__in` list of varying length.

    `build(placeholders)` makes the queryset with `field__in=placeholders`.
    It is compiled once per power-of-two length; a shorter list is padded by
    repeating its last value, which changes no result.
    """

    def __init__(self, build: Callable[[list[int]], models.QuerySet[M, Any]]) -> None:
        self.build = build
        self._by_size: dict[int, tuple[Compiled[M], list[int]]] = {}

    def _for(self, values: list[Any]) -> tuple[Compiled[M], tuple[Any, ...]]:
        size = 1 << max(len(values) - 1, 0).bit_length()
        if size not in self._by_size:
            marks = [-1_000_000_007 - i for i in range(size)]  # values no id has, to find their places
            # mypy infers no type for a lambda with a default argument.
            self._by_size[size] = (Compiled(lambda marks=marks: self.build(marks)), marks)  # type: ignore[misc]
        compiled, marks = self._by_size[size]
        padded = dict(zip(marks, [*values, *[values[-1]] * (size - len(values))], strict=True))
        return compiled, tuple(padded.get(value, value) for value in compiled._statement().fixed)

    def values(self, ids: list) -> list[tuple]:
        if not ids:
            return []
        compiled, params = self._for(ids)
        return compiled.values(*params)

    def objects(self, ids: list[Any]) -> list[M]:
        if not ids:
            return []
        compiled, params = self._for(ids)
        return compiled.objects(*params)


def unindexed(column: str) -> str:
    """`column` written so that SQLite's planner does not pick an index for a condition on it.

    SQLite without statistics (nobody runs ANALYZE) takes `state = %s AND id
    IN (...)` through the (state, ...) index, reading every queued job's
    entry (a million in a long queue) rather than probing the primary key a
    few hundred times; `+state` (SQLite's no-index mark) leaves it the
    primary key.  PostgreSQL, which keeps statistics, gets the column as it is.
    """
    return f"+{column}" if connection.vendor == "sqlite" else column
