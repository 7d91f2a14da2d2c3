"""Many job rows made by the database itself: one INSERT ... SELECT over a generated series.

`bulk_create` builds and sends every row from Python (about 10 s per 100,000
jobs of 50 columns here); a million-job queue made that way takes minutes.
Here Python sends one statement per chunk: every column a constant (the
model's default, as the ORM would adapt it) except the few that vary with
the row's number `n` (its owner, submission, process number, name, times).
SQLite and MariaDB/MySQL count `n` with a recursive CTE, PostgreSQL with `generate_series`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import connection, transaction

from dctoolkit.jobs.models import Job

# Rows per statement: one transaction each, so that SQLite's journal stays small.
CHUNK = 200_000


def series(count: int) -> tuple[str, list[int]]:
    """A FROM clause whose rows number 0 .. count-1 in a column `n`, and its parameters."""
    if connection.vendor == "postgresql":
        return "generate_series(0, %s) AS seq(n)", [count - 1]
    return (
        "(WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < %s) SELECT n FROM seq) AS seq",
        [count - 1],
    )


def insert_jobs(
    count: int,
    owners: Sequence[tuple[int, int]],
    values: Mapping[str, object] | None = None,
    varying: Mapping[str, str] | None = None,
) -> None:
    """`count` jobs, row n owned by `owners[n % len(owners)]` (a (user id, submission id) pair).

    `values`: field name -> a constant for every row (else the field's default);
    `varying`: field name -> SQL of `n` (and `o.k`, the owner's number) for that column.
    The row numbers go on from the jobs already there (`process` is n unless `varying` says otherwise).
    """
    values, varying = dict(values or {}), dict(varying or {})
    quote = connection.ops.quote_name
    template = Job(owner_id=owners[0][0], submission_id=owners[0][1], **values)
    columns, exprs, params = [], [], []
    for field in Job._meta.concrete_fields:
        if field.primary_key or field.name in ("owner", "submission"):
            continue
        columns.append(quote(field.column))
        if field.name in varying:
            exprs.append(varying[field.name])
        elif field.name == "process":
            exprs.append("seq.n")
        else:
            exprs.append("%s")
            params.append(field.get_db_prep_save(getattr(template, field.attname), connection))
    pairs = ", ".join(f"({k}, {int(u)}, {int(s)})" for k, (u, s) in enumerate(owners))
    owner_rows = f"WITH o(k, u, s) AS (VALUES {pairs}) SELECT k, u, s FROM o"
    table = quote(Job._meta.db_table)
    cols = ", ".join([*columns, quote("owner_id"), quote("submission_id")])
    done = 0
    while done < count:
        size = min(CHUNK, count - done)
        source, source_params = series(size)
        sql = (
            f"INSERT INTO {table} ({cols}) SELECT {', '.join(exprs)}, o.u, o.s "
            f"FROM (SELECT n + %s AS n FROM {source}) AS seq JOIN ({owner_rows}) AS o ON o.k = seq.n %% {len(owners)} "
            "ORDER BY seq.n"
        )
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "mysql":  # its recursive CTEs stop at 1,000 rows unless told
                limit = "max_recursive_iterations" if connection.mysql_is_mariadb else "cte_max_recursion_depth"
                cursor.execute(f"SET SESSION {limit} = %s", [size + 1])
            cursor.execute(sql, [*params, done, *source_params])
        done += size
