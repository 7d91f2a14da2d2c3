"""Settings come from the environment; a bad value stops start-up with a message that names it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start(env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DCT_") and k not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "dctoolkit.settings", "DCT_VAR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DCT_HEARTBEAT_SECONDS": "often"}, "DCT_HEARTBEAT_SECONDS='often': use a whole number, such as 5."),
        ({"DCT_NODE_TIMEOUT_SECONDS": "1"}, "DCT_NODE_TIMEOUT_SECONDS='1': use a whole number of at least 2."),
        ({"DCT_FAIRSHARE_HALFLIFE": "a week"}, "DCT_FAIRSHARE_HALFLIFE='a week': 'a week' is not a duration"),
        ({"DCT_REQUIRE_SANDBOX": "maybe"}, "DCT_REQUIRE_SANDBOX='maybe': use 1 or 0"),
        (
            {"DCT_DEFAULT_NETWORK": "wifi"},
            "DCT_DEFAULT_NETWORK='wifi': use host (the node's network), none (no network) "
            "or private (outbound only, through pasta or slirp4netns).",
        ),
        ({"DCT_PRODUCTION": "1"}, "SECRET_KEY is not set: with DCT_PRODUCTION=1 put a long random SECRET_KEY"),
        ({"DCT_NODE_SLOTS": "four"}, "DCT_NODE_SLOTS='four': use a whole number, such as 0."),
        ({"DCT_NODES": "0"}, "DCT_NODES='0': use a whole number of at least 1."),
        ({"DCT_WEB_PORT": "80000"}, "DCT_WEB_PORT='80000': use a whole number from 1 to 65535."),
        ({"DCT_LOG_LEVEL": "loud"}, "DCT_LOG_LEVEL='loud': use DEBUG, INFO, WARNING, ERROR, CRITICAL."),
        (
            {"DCT_GPU_IDLE_PERCENT": "0"},
            "DCT_GPU_IDLE_PERCENT='0': use a percent above 0, up to 100, such as 5.",
        ),
        ({"DCT_GPU_IDLE_AFTER": "soon"}, "DCT_GPU_IDLE_AFTER='soon': 'soon' is not a duration"),
        (
            {"DCT_GPUS": "A100:lots"},
            "DCT_GPUS='A100:lots': 'lots' is not a size; write it like 512MB, 4GB or 2048 (a bare number is MB)",
        ),
        (
            {"DCT_NODE_LABELS": "ib,fast/net"},
            "DCT_NODE_LABELS='ib,fast/net': 'fast/net' is not a label: use letters, digits, '.', '_' and '-'",
        ),
    ],
)
def test_bad_environment_stops_start_up_naming_the_variable(env, message, tmp_path):
    done = start(env, tmp_path)
    assert done.returncode != 0
    assert message in done.stderr


def test_production_defaults_are_safe(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings as s; "
         "print(s.DEBUG, s.DCT_REQUIRE_SANDBOX, s.ALLOWED_HOSTS)"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "dctoolkit.settings", "DCT_VAR": str(tmp_path),
             "DCT_PRODUCTION": "1", "SECRET_KEY": "x" * 50},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "False True ['localhost', '127.0.0.1', '[::1]']"


def test_development_makes_a_private_secret_key_once(tmp_path):
    assert start({}, tmp_path).returncode == 0
    key = tmp_path / "secret_key"
    assert key.stat().st_mode & 0o777 == 0o600
    first = key.read_text()
    assert start({}, tmp_path).returncode == 0 and key.read_text() == first


def clean_env(tmp_path: Path, **extra: str) -> dict:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("DCT_") and k not in ("SECRET_KEY", "DEBUG")}
    return {**keep, "DCT_VAR": str(tmp_path), **extra}


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["-m", "dctoolkit.dev.up"], {"DCT_NODES": "two"}, "./dct up: DCT_NODES='two': use a whole number, such as 2."),
        (["-m", "dctoolkit.dev.up"], {"DCT_FLOWER_PORT": "x"}, "./dct up: DCT_FLOWER_PORT='x': use a whole number"),
        (["worker_entry.py", "--node", "n1"], {"DCT_NODE_SLOTS": "-1"},
         "worker_entry.py: DCT_NODE_SLOTS='-1': use a whole number of at least 0."),
        (["worker_entry.py", "--node", "n1"], {"DCT_LOG_LEVEL": "chatty"}, "worker_entry.py: DCT_LOG_LEVEL='chatty'"),
        (["manage.py", "jobs"], {"DCT_MAX_ATTEMPTS": "3x"}, "dctoolkit: DCT_MAX_ATTEMPTS='3x': use a whole number"),
    ],
)  # fmt: skip
def test_a_bad_value_stops_up_a_node_and_a_command_with_its_name_and_no_traceback(argv, env, message, tmp_path):
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=clean_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_node_slots_set_the_workers_threads_which_are_the_slots_it_registers(tmp_path):
    code = "from django.conf import settings as s; print(s.DCT_NODE_SLOTS, s.CELERY_WORKER_CONCURRENCY)"
    env = clean_env(tmp_path, DCT_NODE_SLOTS="3", DJANGO_SETTINGS_MODULE="dctoolkit.settings")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True, env=env)
    assert done.stdout.split() == ["3", "3"]
    code = "from django.conf import settings as s; print(s.DCT_NODE_SLOTS, hasattr(s, 'CELERY_WORKER_CONCURRENCY'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True,
                          env=clean_env(tmp_path, DJANGO_SETTINGS_MODULE="dctoolkit.settings"))  # fmt: skip
    assert done.stdout.split() == ["0", "False"], "unset: Celery's own default, all logical CPUs"


def test_worker_entry_takes_its_default_slots_from_node_slots(tmp_path):
    done = subprocess.run([sys.executable, "worker_entry.py", "--help"], cwd=ROOT, check=True, capture_output=True,
                          text=True, env=clean_env(tmp_path, DCT_NODE_SLOTS="3"))  # fmt: skip
    assert "(default: DCT_NODE_SLOTS, here 3; 0: all logical CPUs)" in " ".join(done.stdout.split())
