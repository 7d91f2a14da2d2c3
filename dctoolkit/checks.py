"""Django system checks for a safe deployment (`./dct check`; every management command runs them).

Jobs share the node's network, so a broker or database reachable without
a password is reachable by every job: with DCT_PRODUCTION=1 those are
errors, and `./dct migrate` (run before the portal starts) refuses to go
on.  The rest warn about a node that would take no jobs, storage the
server cannot write, and SQLite where PostgreSQL belongs.

Each check reads django.conf.settings when called, so tests call them
with settings overridden.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

TAG = "dctoolkit"
NETWORK_DATABASES = {"django.db.backends.postgresql": "PostgreSQL", "django.db.backends.mysql": "MySQL"}


@register(TAG)
def check_broker_password(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1, REDIS_URL must carry a password."""
    if not settings.PRODUCTION or urlsplit(settings.REDIS_URL).password:
        return []
    return [
        Error(
            f"REDIS_URL ({settings.REDIS_URL}) has no password, and every job can reach the broker: "
            "a job could read, delete or forge the messages that start other users' jobs.",
            hint="Set requirepass in the Redis configuration (deploy/redis.conf) and put the password in "
            "REDIS_URL: redis://:PASSWORD@HOST:6379/0.",
            id="dctoolkit.E001",
        )
    ]


@register(TAG)
def check_database_password(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1, a PostgreSQL or MySQL DATABASE_URL must carry a password."""
    db = settings.DATABASES["default"]
    kind = NETWORK_DATABASES.get(db["ENGINE"])
    if not settings.PRODUCTION or kind is None or db.get("PASSWORD"):
        return []
    return [
        Error(
            f"DATABASE_URL ({kind} database {db.get('NAME')!r} on {db.get('HOST') or 'the local socket'}) has no "
            "password, and every job can reach the database: it holds every user's API token.",
            hint=f"Give the {kind} user a password and put it in DATABASE_URL: "
            f"{'postgres' if kind == 'PostgreSQL' else 'mysql'}://USER:PASSWORD@HOST/DB.",
            id="dctoolkit.E002",
        )
    ]


@register(TAG)
def check_storage_writable(app_configs=None, **kwargs) -> list[CheckMessage]:
    """DCT_STORAGE (or the folder it will be made in) must be writable by this process."""
    storage = Path(settings.DCT_STORAGE)
    existing = next((p for p in (storage, *storage.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return []
    problem = "is not" if existing == storage else f"cannot be made: {existing} is not"
    return [
        Error(
            f"DCT_STORAGE ({storage}) {problem} a folder this process (uid {os.getuid()}) can write; "
            "submissions and job outputs could not be stored.",
            hint=f"Make {storage} and give it to the account dctoolkit runs as (chown), or point DCT_STORAGE "
            "at a folder it owns.",
            id="dctoolkit.E003",
        )
    ]


@register(TAG)
def check_sandbox_available(app_configs=None, **kwargs) -> list[CheckMessage]:
    """DCT_REQUIRE_SANDBOX=1 without bubblewrap: a node on this machine would take no jobs."""
    from dctoolkit.jobs.sandbox import bwrap_path

    if not settings.DCT_REQUIRE_SANDBOX or bwrap_path():
        return []
    return [
        Warning(
            f"DCT_REQUIRE_SANDBOX=1 but bubblewrap is not found ({settings.DCT_BWRAP or 'bwrap on PATH'}): "
            "a node started on this machine takes no jobs.",
            hint="Install it (Debian: apt-get install bubblewrap) on every machine that runs a node, or set "
            "DCT_BWRAP to its path; a machine that runs only the server needs none.",
            id="dctoolkit.W001",
        )
    ]


@register(TAG)
def check_production_database(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1, SQLite is a warning: nodes on other machines cannot share it."""
    if not settings.PRODUCTION or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        return []
    return [
        Warning(
            f"DCT_PRODUCTION=1 with SQLite ({settings.DATABASES['default']['NAME']}): nodes on other machines "
            "cannot reach it, and its writes serialise the whole cluster.",
            hint="Use PostgreSQL: DATABASE_URL=postgres://USER:PASSWORD@HOST/DB (deploy/README.md).",
            id="dctoolkit.W002",
        )
    ]


def refuse_to_start(what: str) -> None:
    """Run these checks in a process that runs no management command (a node); exit on an error.

    Raises SystemExit naming each error and its hint; warnings are only logged.
    """
    import logging

    from django.core.checks import run_checks

    log = logging.getLogger("dctoolkit.checks")
    found = run_checks(tags=[TAG])
    for message in found:
        if not message.is_serious():
            log.warning("%s", message)
    errors = [m for m in found if m.is_serious()]
    if errors:
        raise SystemExit(f"{what} will not start:\n" + "\n".join(f"  {m}" for m in errors))
