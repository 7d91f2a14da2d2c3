"""What the profiling scripts (`profile_pass`, `profile_chores`) share: Django set up on a database of
their own and a Redis of the caller's, outside any test or bench run."""

from __future__ import annotations

import os
import sys


def django_on(db: str, redis_port: int, var: str) -> None:
    """Django configured for `db` (a URL, or an SQLite file's path) and the Redis on `redis_port`; files
    under `var` unless DCT_VAR says otherwise."""
    sys.path.insert(0, os.getcwd())
    os.environ["DATABASE_URL"] = db if "://" in db else f"sqlite:///{db}"
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    os.environ.setdefault("DCT_VAR", var)
    os.environ.setdefault("SECRET_KEY", "profile-only")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dctoolkit.settings"
    import django

    django.setup()
