"""docker-compose.yml stays true to the project (tests/integration/test_compose.py runs it for real)."""

import re
import shlex
from pathlib import Path

import yaml

from dctoolkit.jobs.management.commands import scheduler  # noqa: F401  (the command exists)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SETTINGS = (ROOT / "dctoolkit" / "settings.py").read_text()
# Variables the compose file may set that the project itself does not read.
FOREIGN = {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"}


def words(service: dict) -> list[str]:
    command = service.get("command", [])
    text = " ".join(command) if isinstance(command, list) else command
    return shlex.split(text.replace("$$", "$"))


def test_every_service_command_exists_in_the_project():
    manage_commands = {p.stem for p in ROOT.glob("dctoolkit/*/management/commands/*.py")}
    django_builtin = {"migrate", "collectstatic"}
    for name, service in COMPOSE["services"].items():
        argv = words(service)
        if "build" not in service:  # (every service is built here now, redis and postgres too)
            continue
        text = " ".join(argv)
        for cmd in re.findall(r"manage\.py (\w+)", text):
            assert cmd in manage_commands | django_builtin, f"{name}: manage.py {cmd} does not exist"
        for script in re.findall(r"python (\w+\.py)", text):
            assert (ROOT / script).is_file(), f"{name}: {script} is missing"
        if "gunicorn" in text:
            assert "dctoolkit.wsgi" in text and (ROOT / "dctoolkit" / "wsgi.py").is_file()
        if "celery" in text:
            assert "-A dctoolkit" in text


def test_app_services_are_web_scheduler_node_flower():
    services = COMPOSE["services"]
    assert {"redis", "postgres", "web", "scheduler", "node", "flower"} <= set(services)
    assert "worker_entry.py" in " ".join(words(services["node"]))
    assert "manage.py scheduler" in " ".join(words(services["scheduler"]))
    assert "--appendonly" in " ".join(words(services["redis"])), "redis keeps its data"


def test_every_env_var_it_sets_is_read_by_the_settings():
    for name, service in COMPOSE["services"].items():
        env = service.get("environment", {})
        for var in env:
            if var in FOREIGN or name in ("postgres", "redis"):
                continue
            assert f'"{var}"' in SETTINGS, f"{name} sets {var}, which dctoolkit/settings.py never reads"


def test_no_secret_is_written_in_the_file():
    text = (ROOT / "docker-compose.yml").read_text()
    for var in ("SECRET_KEY", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"):
        for line in text.splitlines():
            if re.match(rf"\s*{var}:", line):
                assert "${" in line, f"{var} must come from the env file: {line.strip()}"


def test_every_service_shares_one_storage_volume():
    for name in ("web", "scheduler", "node", "flower"):
        service = COMPOSE["services"][name]
        assert "storage:/storage" in service["volumes"], name
        assert service["environment"]["DCT_STORAGE"] == "/storage"
