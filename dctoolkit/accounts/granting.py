"""Granting, revoking and reading granted folders (the rows; the rules are in grants.py).

Used by `./dct grant`, the admin, the submission's check (jobs/intake/queue.py)
and the node, which reads a job owner's grants when the job starts, so that a
revoked grant no longer applies to a job that has not started.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from dctoolkit.accounts.grants import GrantedFolder
from dctoolkit.accounts.models import Grant
from dctoolkit.lib.fastsql import Compiled

# A user's grants, read by the node for every job it starts: compiled once (see fastsql).
GRANT_ROWS = Compiled(lambda: Grant.objects.filter(user_id=0).values_list("path", "writable"))


def hidden_folders() -> tuple[str, ...]:
    """Host folders no job may see: the project, var/, shared storage, scratch, the SQLite file's folder."""
    paths = [settings.BASE_DIR, settings.VAR_DIR, settings.DCT_STORAGE, settings.DCT_SCRATCH]
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and db["NAME"] != ":memory:":
        paths.append(Path(db["NAME"]).parent)
    return _resolved(tuple(str(p) for p in paths))


@lru_cache(maxsize=8)
def _resolved(paths: tuple[str, ...]) -> tuple[str, ...]:
    # Resolved once per process and settings (the node asks for every job it starts: some fifty lstat calls,
    # half a millisecond); these are the operator's folders, which no job can reach to change.
    return tuple(sorted({str(Path(p).resolve()) for p in paths}))


def folders_of(user_id: int) -> tuple[GrantedFolder, ...]:
    """The folders granted to user `user_id` now, each once (writable wins over read-only), by path."""
    return folders_from(GRANT_ROWS.values(user_id))


def folders_from(rows: Iterable[Sequence]) -> tuple[GrantedFolder, ...]:
    """`folders_of` from a user's grant rows, each (path, writable) as read."""
    found: dict[str, bool] = {}
    for path, writable in rows:
        found[path] = found.get(path, False) or bool(writable)
    return tuple(GrantedFolder(path, writable) for path, writable in sorted(found.items()))


def owner_grants_column(table: str) -> str:
    """A PostgreSQL column of a statement on `table` (one with `owner_id`): that owner's grant rows, a JSON
    array of [path, writable], read with the statement (the node's start: `transitions.start_and_read`)."""
    grants = Grant._meta.db_table
    return (
        f"(SELECT COALESCE(json_agg(json_build_array(g.path, g.writable)), '[]'::json) FROM {grants} g"  # noqa: S608
        f" WHERE g.user_id = {table}.owner_id)"
    )
