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
