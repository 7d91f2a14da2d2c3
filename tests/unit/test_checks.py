"""The deployment checks (dctoolkit/checks.py): what production refuses, each with a hint saying what to do.

Called directly with settings overridden, then once through `manage.py check`
and a node worker's start, as an operator meets them.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dctoolkit import checks
from dctoolkit.nodes.worker import checks as node_checks

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = {"ENGINE": "django.db.backends.postgresql", "NAME": "dct", "HOST": "db.lab", "USER": "dct"}
MYSQL = {"ENGINE": "django.db.backends.mysql", "NAME": "dct", "HOST": "db.lab", "USER": "dct"}


@pytest.fixture
def production(settings, monkeypatch):
    settings.PRODUCTION = True
    settings.REDIS_URL = "redis://:s3cret-s3cret-s3cret@redis.lab:6379/0"
    set_database(monkeypatch, {**POSTGRES, "PASSWORD": "pw"})
    settings.DEBUG = False
    settings.DCT_BASE_URL = "https://cluster.lab"
    settings.ALLOWED_HOSTS = ["cluster.lab"]
    settings.EMAIL_HOST = "smtp.lab"
    return settings


def set_database(monkeypatch, db: dict) -> None:
    # Only the checks read it here (Django warns when DATABASES itself is overridden).
    from django.conf import settings

    monkeypatch.setitem(settings.DATABASES, "default", db)


def ids(found) -> list[str]:
    return [m.id for m in found]


def test_a_well_configured_production_passes_every_check(production, tmp_path):
    production.DCT_STORAGE = tmp_path
    production.DCT_SCRATCH = tmp_path / "scratch"
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
    from dctoolkit.nodes.worker.sandbox import bwrap_path

    bwrap_path.cache_clear()  # it is looked up once per process
    yield
    bwrap_path.cache_clear()


def test_a_required_sandbox_without_bubblewrap_warns(settings, tmp_path, fresh_bwrap_lookup):
    from dctoolkit.nodes.worker.sandbox import bwrap_path

    settings.DCT_REQUIRE_SANDBOX = True
    settings.DCT_BWRAP = str(tmp_path / "no-bwrap")
    (warning,) = node_checks.check_sandbox_available()
    assert warning.id == "dctoolkit.W001"
    assert warning.msg.startswith(f"DCT_REQUIRE_SANDBOX=1 but bubblewrap is not found ({tmp_path / 'no-bwrap'})")
    assert "apt-get install bubblewrap" in warning.hint
    settings.DCT_BWRAP = ""
    bwrap_path.cache_clear()
    assert node_checks.check_sandbox_available() == [], "bwrap is installed here"
    settings.DCT_REQUIRE_SANDBOX = False
    settings.DCT_BWRAP = str(tmp_path / "no-bwrap")
    bwrap_path.cache_clear()
    assert node_checks.check_sandbox_available() == []


def test_scratch_that_cannot_be_written_warns_that_a_node_here_fails_its_jobs(settings, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    settings.DCT_SCRATCH = a_file / "scratch"
    (warning,) = node_checks.check_scratch_writable()
    assert warning.id == "dctoolkit.W003" and not warning.is_serious()
    assert warning.msg.startswith(f"DCT_SCRATCH ({a_file / 'scratch'}) cannot be made: {a_file} is not a folder")
    assert "would fail every job" in warning.msg
    assert "chown" in warning.hint and "only the server needs none" in warning.hint
    settings.DCT_SCRATCH = tmp_path / "not-yet" / "scratch"
    assert node_checks.check_scratch_writable() == []


@pytest.mark.parametrize(("beat", "timeout"), [(5, 9), (5, 5), (10, 15)])
def test_a_node_timeout_under_two_heartbeats_is_an_error(settings, beat, timeout):
    settings.DCT_HEARTBEAT_SECONDS, settings.DCT_NODE_TIMEOUT_SECONDS = beat, timeout
    (error,) = checks.check_node_timeout()
    assert error.id == "dctoolkit.E004" and error.is_serious()
    assert error.msg.startswith(
        f"DCT_NODE_TIMEOUT_SECONDS={timeout} is less than two heartbeats (DCT_HEARTBEAT_SECONDS={beat})"
    )
    assert f"Set DCT_NODE_TIMEOUT_SECONDS to at least {2 * beat}" in error.hint


@pytest.mark.parametrize(("beat", "timeout"), [(5, 15), (5, 10), (1, 6)])
def test_a_node_timeout_of_two_heartbeats_or_more_passes(settings, beat, timeout):
    settings.DCT_HEARTBEAT_SECONDS, settings.DCT_NODE_TIMEOUT_SECONDS = beat, timeout
    assert checks.check_node_timeout() == []


def test_a_bad_billing_is_an_error_saying_what_to_write(settings):
    settings.DCT_BILLING = "cpu=1,gpu=eight"
    (error,) = checks.check_billing()
    assert error.id == "dctoolkit.E006" and error.is_serious()
    assert error.msg == "DCT_BILLING='cpu=1,gpu=eight': gpu=eight: a weight is a number from 0 up, such as gpu=1."
    assert "DCT_BILLING=cpu=1,gpu=8,mem_gb=0.25" in error.hint
    settings.DCT_BILLING = "cpu=1,gpu=8,mem_gb=0.25"
    assert checks.check_billing() == []


def test_debug_in_production_is_an_error(production):
    production.DEBUG = True
    (error,) = checks.check_production_debug()
    assert error.id == "dctoolkit.E005" and error.is_serious()
    assert error.msg.startswith("DEBUG=1 with DCT_PRODUCTION=1: an error page would show")
    assert "DEBUG=0" in error.hint
    production.PRODUCTION = False
    assert checks.check_production_debug() == []


@pytest.mark.parametrize("url", ["http://localhost:8000", "http://127.0.0.1", "http://[::1]:8000/"])
def test_a_base_url_on_loopback_in_production_warns(production, url):
    production.DCT_BASE_URL = url
    (warning,) = checks.check_production_addresses()
    assert warning.id == "dctoolkit.W004" and not warning.is_serious()
    assert warning.msg.startswith(f"DCT_BASE_URL ({url}) points at this machine's loopback")
    assert "DCT_BASE_URL=https://cluster.lab" in warning.hint


def test_allowed_hosts_left_at_loopback_in_production_warns(production):
    production.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
    (warning,) = checks.check_production_addresses()
    assert warning.id == "dctoolkit.W005"
    assert warning.msg.startswith("ALLOWED_HOSTS (localhost,127.0.0.1,[::1]) names only this machine's loopback")
    assert "ALLOWED_HOSTS=cluster.lab" in warning.hint
    production.ALLOWED_HOSTS = ["localhost", "cluster.lab"]
    assert checks.check_production_addresses() == []


def test_laptop_addresses_are_fine_outside_production(settings):
    settings.PRODUCTION = False
    settings.DCT_BASE_URL, settings.ALLOWED_HOSTS, settings.EMAIL_HOST = "http://localhost:8000", ["localhost"], ""
    assert checks.check_production_addresses() == [] and checks.check_production_mail() == []


def test_production_without_a_mail_server_warns(production):
    production.EMAIL_HOST = ""
    (warning,) = checks.check_production_mail()
    assert warning.id == "dctoolkit.W006" and not warning.is_serious()
    assert warning.msg.startswith("DCT_PRODUCTION=1 without EMAIL_HOST: the mail a user asks for")
    assert "Set EMAIL_HOST" in warning.hint


def test_bad_desktop_settings_are_each_an_error(settings):
    from dctoolkit.nodes.worker.desktop import desktop_config

    settings.DCT_DESKTOP = desktop_config({"DCT_NODE_POLICY": "laptop", "DCT_SUSPEND_MAX": "ages"})
    found = node_checks.check_desktop_settings()
    assert ids(found) == ["dctoolkit.E010"] * 2 and all(m.is_serious() for m in found)
    assert found[0].msg.startswith("DCT_NODE_POLICY='laptop': use desktop")
    assert found[1].msg.startswith("DCT_SUSPEND_MAX='ages'")
    settings.DCT_DESKTOP = desktop_config({"DCT_NODE_POLICY": "desktop", "DCT_IDLE_MINUTES": "5"})
    assert node_checks.check_desktop_settings() == []


ALL = [
    checks.check_broker_password,
    checks.check_database_password,
    checks.check_storage_writable,
    node_checks.check_sandbox_available,
    node_checks.check_scratch_writable,
    node_checks.check_desktop_settings,
    checks.check_production_database,
    checks.check_node_timeout,
    checks.check_billing,
    checks.check_production_debug,
    checks.check_production_addresses,
    checks.check_production_mail,
    checks.check_unknown_variables,
]


def test_every_registered_check_is_tested_here():
    from django.core.checks import registry

    registered = {f.__name__ for f in registry.registry.get_checks() if "dctoolkit" in getattr(f, "tags", ())}
    assert registered == {f.__name__ for f in ALL}


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


def test_check_names_a_node_timeout_too_short_with_its_hint(tmp_path):
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DCT_", "DATABASE_URL", "REDIS_URL"))}
    env = {**keep, "DCT_VAR": str(tmp_path / "var"), "SECRET_KEY": "x", "DCT_HEARTBEAT_SECONDS": "5",
           "DCT_NODE_TIMEOUT_SECONDS": "6"}  # fmt: skip
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "(dctoolkit.E004) DCT_NODE_TIMEOUT_SECONDS=6 is less than two heartbeats" in done.stderr
    assert "HINT: Set DCT_NODE_TIMEOUT_SECONDS to at least 10" in done.stderr


# --- W007: a DCT_ variable nothing reads ------------------------------------------------------------------------

SOURCES = [*sorted((ROOT / "dctoolkit").rglob("*.py")), *sorted((ROOT / "integrations").rglob("*.py")),
           ROOT / "worker_entry.py", ROOT / "manage.py"]  # fmt: skip
SCRIPTS = [ROOT / "dct", ROOT / ".ci" / "run"]


def read_names() -> set[str]:
    """The DCT_ variables the code reads: quoted names in Python (os.environ, the settings' _env_* calls, what a
    node puts in a job's environment), any name in the shell scripts."""
    quoted = {m for path in SOURCES for m in re.findall(r"[\"'](DCT_[A-Z0-9_]+)[\"']", path.read_text())}
    # A secret's NAME_FILE (settings._env_secret) is read too.
    secrets = re.findall(r"_env_secret\(\"(DCT_[A-Z0-9_]+)\"\)", (ROOT / "dctoolkit" / "settings.py").read_text())
    shell = {m for path in SCRIPTS for m in re.findall(r"\bDCT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())}
    return quoted | shell | {f"{name}_FILE" for name in secrets}


def test_every_variable_the_code_reads_is_known_and_every_known_one_is_read():
    read = read_names() - set(checks.REMOVED_VARIABLES)
    assert read - checks.KNOWN_VARIABLES == set(), "read but not in checks.KNOWN_VARIABLES"
    assert checks.KNOWN_VARIABLES - read == set(), "in checks.KNOWN_VARIABLES but read nowhere"


def test_a_misspelt_or_removed_variable_is_named_with_what_to_do(monkeypatch):
    for name in [n for n in os.environ if n.startswith("DCT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DCT_HEARTBEAT_SECOND", "3")
    monkeypatch.setenv("DCT_PASS_GATHER_MS", "5")
    monkeypatch.setenv("DCT_JOB_ID", "7")  # a job's own: known
    found = checks.check_unknown_variables()
    assert [(m.id, m.msg, m.hint) for m in found] == [
        ("dctoolkit.W007", "DCT_HEARTBEAT_SECOND is set, but dctoolkit reads no such setting",
         "did you mean DCT_HEARTBEAT_SECONDS?"),
        ("dctoolkit.W007", "DCT_PASS_GATHER_MS is set, but dctoolkit reads no such setting",
         checks.REMOVED_VARIABLES["DCT_PASS_GATHER_MS"]),
    ]  # fmt: skip
    monkeypatch.setenv("DCT_ZZZ_NOTHING_LIKE_IT", "1")
    assert checks.check_unknown_variables()[-1].hint == "README, Settings, lists every DCT_ setting"


def test_a_warning_reaches_a_command_with_an_option_named_stderr(tmp_path):
    # `logs --stderr` once took Django's name for the stream its messages go to: any warning killed it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCT_", "DATABASE_URL", "REDIS_URL"))}
    env.update(DCT_VAR=str(tmp_path / "var"), DATABASE_URL=f"sqlite:///{tmp_path / 'none.sqlite3'}")
    env["DCT_HEARTBEAT_SECOND"] = "3"
    argv = [sys.executable, "manage.py", "logs", "1", "--stderr", "--user", "alice"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert "(dctoolkit.W007) DCT_HEARTBEAT_SECOND is set" in done.stderr
    assert done.returncode == 1 and "database" in done.stderr  # the command's own answer: no database here
