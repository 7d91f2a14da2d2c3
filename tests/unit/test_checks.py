"""The deployment checks (dctoolkit/checks.py): what production refuses, each with a hint saying what to do.

Called directly with settings overridden, then once through `manage.py check`
and a node worker's start, as an operator meets them.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dctoolkit import checks

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = {"ENGINE": "django.db.backends.postgresql", "NAME": "dct", "HOST": "db.lab", "USER": "dct"}
MYSQL = {"ENGINE": "django.db.backends.mysql", "NAME": "dct", "HOST": "db.lab", "USER": "dct"}


@pytest.fixture
def production(settings, monkeypatch):
    settings.PRODUCTION = True
    settings.REDIS_URL = "redis://:s3cret-s3cret-s3cret@redis.lab:6379/0"
    set_database(monkeypatch, {**POSTGRES, "PASSWORD": "pw"})
    return settings


def set_database(monkeypatch, db: dict) -> None:
    # Only the checks read it here (Django warns when DATABASES itself is overridden).
    from django.conf import settings

    monkeypatch.setitem(settings.DATABASES, "default", db)


def ids(found) -> list[str]:
    return [m.id for m in found]


def test_a_well_configured_production_passes_every_check(production, tmp_path):
    production.DCT_STORAGE = tmp_path
    production.DCT_REQUIRE_SANDBOX = True
    found = [m for check in ALL for m in check()]
    assert found == []


@pytest.mark.parametrize("url", ["redis://redis.lab:6379/0", "redis://127.0.0.1:6379/0", "rediss://user@redis.lab/0"])
def test_production_refuses_a_broker_without_a_password(production, url):
    production.REDIS_URL = url
    (error,) = checks.check_broker_password()
    assert error.id == "dctoolkit.E001" and error.is_serious()
    assert error.msg.startswith(f"REDIS_URL ({url}) has no password, and every job can reach the broker")
    assert "redis://:PASSWORD@HOST:6379/0" in error.hint and "requirepass" in error.hint


def test_a_broker_without_a_password_is_only_refused_in_production(settings):
    settings.PRODUCTION = False
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert checks.check_broker_password() == []


@pytest.mark.parametrize(("db", "scheme"), [(POSTGRES, "postgres"), (MYSQL, "mysql")])
def test_production_refuses_a_database_without_a_password(production, monkeypatch, db, scheme):
    set_database(monkeypatch, {**db, "PASSWORD": ""})
    (error,) = checks.check_database_password()
    assert error.id == "dctoolkit.E002" and error.is_serious()
    assert "has no password, and every job can reach the database" in error.msg and "db.lab" in error.msg
    assert f"{scheme}://USER:PASSWORD@HOST/DB" in error.hint


def test_a_database_with_a_password_or_sqlite_passes_the_password_check(production, monkeypatch, tmp_path):
    assert checks.check_database_password() == []
    set_database(monkeypatch, {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db")})
    assert checks.check_database_password() == []


def test_sqlite_in_production_is_a_warning(production, monkeypatch, tmp_path):
    set_database(monkeypatch, {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db")})
    (warning,) = checks.check_production_database()
    assert warning.id == "dctoolkit.W002" and not warning.is_serious()
    assert "postgres://" in warning.hint
    production.PRODUCTION = False
    assert checks.check_production_database() == []


def test_storage_that_cannot_be_written_is_an_error(settings, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    settings.DCT_STORAGE = a_file / "storage"
    (error,) = checks.check_storage_writable()
    assert error.id == "dctoolkit.E003"
    assert error.msg.startswith(f"DCT_STORAGE ({a_file / 'storage'}) cannot be made: {a_file} is not a folder")
    assert "chown" in error.hint
    settings.DCT_STORAGE = tmp_path / "not-yet" / "storage"  # made on first use: fine
    assert checks.check_storage_writable() == []


def test_storage_the_process_may_not_write_is_an_error(settings, tmp_path):
    # Root writes anywhere, so the check runs without the capability that allows it.
    storage = tmp_path / "storage"
    storage.mkdir(mode=0o755)
    os.chown(storage, 65534, 65534)
    code = (
        "import django; django.setup(); from dctoolkit import checks;"
        "print([m.id for m in checks.check_storage_writable()])"
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", code],
        cwd=ROOT, env={**os.environ, "DCT_STORAGE": str(storage), "DCT_VAR": str(tmp_path / "var"), "SECRET_KEY": "x"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout.strip() == "['dctoolkit.E003']", done.stderr


@pytest.fixture
def fresh_bwrap_lookup():
    from dctoolkit.jobs.sandbox import bwrap_path

    bwrap_path.cache_clear()  # it is looked up once per process
    yield
    bwrap_path.cache_clear()


def test_a_required_sandbox_without_bubblewrap_warns(settings, tmp_path, fresh_bwrap_lookup):
    from dctoolkit.jobs.sandbox import bwrap_path

    settings.DCT_REQUIRE_SANDBOX = True
    settings.DCT_BWRAP = str(tmp_path / "no-bwrap")
    (warning,) = checks.check_sandbox_available()
    assert warning.id == "dctoolkit.W001"
    assert warning.msg.startswith(f"DCT_REQUIRE_SANDBOX=1 but bubblewrap is not found ({tmp_path / 'no-bwrap'})")
    assert "apt-get install bubblewrap" in warning.hint
    settings.DCT_BWRAP = ""
    bwrap_path.cache_clear()
    assert checks.check_sandbox_available() == [], "bwrap is installed here"
    settings.DCT_REQUIRE_SANDBOX = False
    settings.DCT_BWRAP = str(tmp_path / "no-bwrap")
    bwrap_path.cache_clear()
    assert checks.check_sandbox_available() == []


ALL = [
    checks.check_broker_password,
    checks.check_database_password,
    checks.check_storage_writable,
    checks.check_sandbox_available,
    checks.check_production_database,
]


def production_env(tmp_path: Path, **extra: str) -> dict:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DCT_", "DATABASE_URL", "REDIS_URL"))}
    return {**keep, "DCT_PRODUCTION": "1", "SECRET_KEY": "x" * 50, "DCT_VAR": str(tmp_path / "var"),
            "DCT_STORAGE": str(tmp_path / "storage"), "REDIS_URL": "redis://127.0.0.1:1/0",
            "DATABASE_URL": "postgres://dct@127.0.0.1:1/dct", **extra}  # fmt: skip


def test_migrate_refuses_to_run_in_production_on_a_broker_and_database_without_passwords(tmp_path):
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=production_env(tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SystemCheckError" in done.stderr and "Traceback" not in done.stderr
    assert "(dctoolkit.E001) REDIS_URL (redis://127.0.0.1:1/0) has no password" in done.stderr
    assert "(dctoolkit.E002) DATABASE_URL (PostgreSQL database 'dct' on 127.0.0.1) has no password" in done.stderr
    assert "HINT: Give the PostgreSQL user a password" in done.stderr


def test_a_node_refuses_to_start_in_production_on_a_broker_without_a_password(tmp_path):
    env = production_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    done = subprocess.run([sys.executable, "worker_entry.py", "--node", "n1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "this node worker will not start:\n  ?: (dctoolkit.E001) REDIS_URL" in done.stderr
    assert "(dctoolkit.W002) DCT_PRODUCTION=1 with SQLite" in done.stderr  # a warning: logged, not fatal
