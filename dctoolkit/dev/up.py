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
import socket
import subprocess
import sys
from pathlib import Path

from dctoolkit.dev.stack import RedisVersionError, redis_config, redis_server_binary, redis_url, write_private

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def manage(*args: str, env: dict) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"./dct up: 'manage.py {' '.join(args)}' failed (see above)")
    return done.stdout


def kept_secret(path: Path, nbytes: int) -> str:
    """The random secret kept in `path` (mode 0600), made on first use."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(nbytes) + "\n")
    os.chmod(path, 0o600)  # one made before secrets were kept private
    return path.read_text().strip()


def ensure_demo_user(var: Path, env: dict) -> tuple[str, str]:
    """The demo account (staff), with a password kept in var/demo_password (handed over in the environment)."""
    password = kept_secret(var / "demo_password", 9)
    code = (
        "import os;from django.contrib.auth import get_user_model as g;"
        "u,_=g().objects.get_or_create(username='demo');"
        "u.is_staff=True;u.email=u.email or 'demo@localhost';"
        "u.set_password(os.environ['DCT_UP_DEMO_PASSWORD']);u.save()"
    )
    manage("shell", "-c", code, env={**env, "DCT_UP_DEMO_PASSWORD": password})
    return "demo", password


def private_redis(var: Path) -> tuple[str, str]:
    """The command line and URL of the private Redis: a password kept in var/, its config file 0600.

    The password is in var/redis_password, var/redis_url and var/redis/redis.conf,
    each mode 0600; never on a command line.
    """
    try:
        binary, version = redis_server_binary()
    except RedisVersionError as exc:
        raise SystemExit(f"./dct up: {exc}") from None
    password = kept_secret(var / "redis_password", 24)
    port = free_port()
    redis_dir = var / "redis"
    redis_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(redis_dir, 0o700)  # one made before the umask (settings.py) kept it private
    conf = redis_dir / "redis.conf"
    write_private(conf, redis_config(port, redis_dir, password, version, persistent=True))
    url = redis_url(port, password)
    write_private(var / "redis_url", url + "\n")
    return shlex.join([binary, str(conf)]), url


def gunicorn_command(port: int) -> list[str]:
    """The portal's gunicorn: threads that a slow or half-open client cannot all hold.

    gthread workers (gunicorn 23+) hand a connection that has sent nothing
    for 5 s back to their event loop instead of blocking a thread on it, and
    close idle ones after --keep-alive; --timeout restarts a worker stuck on
    one request.  16 threads a worker, so ten half-open connections delay
    nobody even if one worker took them all (sync workers stalled for 30 s).
    But a connection that never finishes its headers holds its thread until
    the client leaves: more of those than threads is what the buffering
    proxy in front is for (deploy/README.md).
    """
    return [PYTHON, "-m", "gunicorn", "dctoolkit.wsgi", "--bind", f"127.0.0.1:{port}",
            *GUNICORN_OPTIONS, "--access-logfile", "-"]  # fmt: skip


# Shared with docker-compose.yml and deploy/systemd/dct-web.service (a test keeps them equal).
GUNICORN_OPTIONS = ("--worker-class", "gthread", "--workers", "2", "--threads", "16", "--timeout", "60",
                    "--graceful-timeout", "20", "--keep-alive", "2")  # fmt: skip


def flower_command(port: int) -> list[str]:
    """Flower on loopback; its login comes from FLOWER_BASIC_AUTH in its environment, never argv."""
    return [PYTHON, "-m", "celery", "-A", "dctoolkit", "flower", f"--port={port}", "--address=127.0.0.1"]


def process_table(nodes: int, slots: int, web_port: int, flower_port: int) -> dict[str, str]:
    """Name -> command line of every process `./dct up` supervises, Redis aside.

    `slots`: the CPUs each node offers (DCT_NODE_SLOTS); 0: all of this machine's.
    """
    processes = {"scheduler": shlex.join([PYTHON, "manage.py", "scheduler"])}
    for i in range(1, nodes + 1):
        cmd = [PYTHON, "worker_entry.py", "--node", f"node-{i}"]
        if slots:
            cmd += ["--slots", str(slots)]
        processes[f"node-{i}"] = shlex.join(cmd)
    processes["web"] = shlex.join(gunicorn_command(web_port))
    processes["flower"] = shlex.join(flower_command(flower_port))
    return processes


def main() -> int:
    # Before anything is created: the database, var/ and every file in it
    # are the owner's alone (settings.py sets the same for each process).
    os.umask(0o077)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        var = settings.VAR_DIR  # the first use reads every setting: a bad one stops here, named
    except ImproperlyConfigured as exc:
        raise SystemExit(f"./dct up: {exc}") from None
    var.mkdir(parents=True, exist_ok=True)
    # A var/ made before the umask may hold a database and files of mode 0644:
    # closed, the folder keeps them from everyone else.
    var.chmod(0o700)
    # The children's environment: this one, handed on (their settings.py reads it), plus
    # what `./dct up` decides for them (a sandbox is not required on a laptop, the private Redis).
    env = dict(os.environ)
    env.setdefault("DCT_REQUIRE_SANDBOX", "0")
    web_port, flower_port, nodes = settings.DCT_WEB_PORT, settings.DCT_FLOWER_PORT, settings.DCT_NODES
    for name, port in (("DCT_WEB_PORT", web_port), ("DCT_FLOWER_PORT", flower_port)):
        if port_in_use(port):
            raise SystemExit(f"./dct up: port {port} is taken; set {name} to a free port (or stop what uses it)")

    processes: dict[str, str] = {}
    private = not settings.REDIS_URL_SET
    if private:
        processes["redis"], env["REDIS_URL"] = private_redis(var)
    else:
        (var / "redis_url").unlink(missing_ok=True)

    print("dctoolkit: preparing the database ...", flush=True)
    manage("migrate", "--noinput", env=env)
    manage("collectstatic", "--noinput", env=env)
    user, password = ensure_demo_user(var, env)
    # Flower's own login (not the demo account's), read by Flower from its environment.
    flower_password = kept_secret(var / "flower_password", 12)
    flower_env = {**env, "FLOWER_BASIC_AUTH": f"admin:{flower_password}"}
    processes.update(process_table(nodes, settings.DCT_NODE_SLOTS, web_port, flower_port))

    where = " (private, password in var/redis_password)" if private else ""
    print(
        f"""
dctoolkit is starting
  portal      http://localhost:{web_port}/   (log in as {user} / {password})
  API         http://localhost:{web_port}/api/
  Flower      http://localhost:{flower_port}/   (log in as admin / {flower_password})
  Redis       {redact(env["REDIS_URL"])}{where}
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
        manager.add_process(name, cmd, env=flower_env if name == "flower" else env, cwd=str(ROOT))
    manager.loop()
    return manager.returncode or 0


def redact(url: str) -> str:
    """`url` with its password, if any, shown as ***."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


if __name__ == "__main__":
    sys.exit(main())
