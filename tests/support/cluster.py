"""A real cluster for integration tests: a private redis-server on a free port, a fresh
database, the scheduler and node workers as subprocesses, and the CLI run the way users run it.

Nothing is mocked or eager.  A missing service fails the test; it never skips.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dctoolkit.dev.stack import (
    RedisServer,
    free_port,
    kill_group,
    redis_server_binary,
    spawn,
    stop_processes,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# How long a test waits for jobs to end where it asserts nothing of how long they took, only their order
# or outcome: 60 s (wait_job's default) ran out at load 10 on 2 cores.
DONE_SECONDS = 180


# Re-exported: the tests import these from here.
__all__ = [
    "DONE_SECONDS",
    "Cluster",
    "Database",
    "Redis",
    "free_port",
    "postgres_url",
    "redis_server_binary",
    "via",
    "wait_until",
]
Redis = RedisServer


PG_BASE = "postgres://postgres@127.0.0.1:5432/postgres"


def postgres_url() -> str:
    """DCT_TEST_DATABASE_URL where it names PostgreSQL, else the server on 127.0.0.1:5432 where one answers,
    else "" (the tests that need PostgreSQL whatever the tier's engine)."""
    base = os.environ.get("DCT_TEST_DATABASE_URL", "")
    if base.startswith("postgres"):
        return base
    try:
        socket.create_connection(("127.0.0.1", 5432), 2).close()
    except OSError:
        return ""
    return PG_BASE


def via(url: str, host: str, port: int) -> str:
    """`url` with its host and port replaced (what a client on another host, or behind a proxy, connects to)."""
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}{host}:{port}"))


class Database:
    """SQLite in the test folder, or a throwaway database on DCT_TEST_DATABASE_URL's server."""

    def __init__(self, workdir: Path) -> None:
        self.base = os.environ.get("DCT_TEST_DATABASE_URL", "")
        self.name = ""
        if not self.base:
            self.url = f"sqlite:///{workdir / 'db.sqlite3'}"
        else:
            self.name = f"dct_test_{uuid.uuid4().hex[:10]}"
            self.url = self.base.rsplit("/", 1)[0] + "/" + self.name
            self._admin(f"CREATE DATABASE {self.name}")

    def _admin(self, sql: str) -> None:
        if self.base.startswith(("postgres", "postgresql")):
            import psycopg

            with psycopg.connect(self.base, autocommit=True) as conn:
                conn.execute(sql)
        else:
            import dj_database_url
            import pymysql

            cfg = dj_database_url.parse(self.base)
            conn = pymysql.connect(
                host=cfg["HOST"], user=cfg["USER"], password=cfg["PASSWORD"] or "", port=int(cfg["PORT"] or 3306)
            )
            conn.cursor().execute(sql)
            conn.close()

    def drop(self) -> None:
        if self.name:
            extra = " WITH (FORCE)" if self.base.startswith("postgres") else ""
            self._admin(f"DROP DATABASE IF EXISTS {self.name}{extra}")


# The reader: one long-lived Python with Django set up against the cluster,
# running read-only management commands exactly as `manage.py CMD` would
# (call_command, the same parser and output), one JSON line per request.
# Tests poll `job ID --json` many times a second; a fresh `manage.py` costs
# about a second of CPU each (Django's start-up), which made the suite wait on
# its own polling.
READER_SOURCE = """
import io, json, os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
django.setup()
from django.core.management import CommandError, call_command
from django.db import close_old_connections
for line in sys.stdin:
    args = json.loads(line)
    out, err, rc = io.StringIO(), io.StringIO(), 0
    close_old_connections()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        err.write(f"CommandError: {exc}\\n")
        rc = 1
    sys.stdout.write(json.dumps({"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}) + "\\n")
    sys.stdout.flush()
"""
READ_ONLY_COMMANDS = ("job", "jobs", "nodes", "usage", "dag")


class Reader:
    """A long-lived `manage.py` for read-only commands (see READER_SOURCE); restarted if it dies."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def run(self, args: list[str]) -> dict:
        for _ in range(2):  # once more with a fresh reader if this one died
            if self.proc is None or self.proc.poll() is not None:
                with open(self.log_path, "ab") as log:
                    self.proc = subprocess.Popen(
                        [PYTHON, "-c", READER_SOURCE],
                        cwd=ROOT,
                        env=self.env,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
            try:
                self.proc.stdin.write(json.dumps(args) + "\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if line:
                return json.loads(line)
            self.close()
        raise AssertionError(f"the cluster's reader could not run {args}; see {self.log_path}")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Cluster:
    """Redis, a database, the scheduler and nodes, in a private folder."""

    def __init__(
        self,
        workdir: Path,
        heartbeat: int = 1,
        node_timeout: int = 6,
        extra_env: dict | None = None,
        scheduler: bool = True,
    ) -> None:
        self.workdir = workdir
        self.with_scheduler = scheduler
        self.redis = RedisServer(workdir / "redis")
        self.db = Database(workdir)
        self.nodes: dict[str, subprocess.Popen] = {}
        self.others: list[subprocess.Popen] = []
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DCT_", "DATABASE_URL", "REDIS_URL"))},
            "DCT_VAR": str(workdir / "var"),
            "DATABASE_URL": self.db.url,
            "REDIS_URL": self.redis.url,
            "DCT_HEARTBEAT_SECONDS": str(heartbeat),
            "DCT_NODE_TIMEOUT_SECONDS": str(node_timeout),
            "SECRET_KEY": "integration-tests-only",
            "DCT_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.logs = workdir / "logs"
        self.reader = Reader(self.env, self.logs / "reader.log")

    # --- processes -----------------------------------------------------------
    def __enter__(self) -> Cluster:
        """`with Cluster(path) as c:` starts it, and stops everything on the way out, even half-started."""
        try:
            return self.start(self.with_scheduler)
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start_nodes(self, slots: dict[str, int]) -> None:
        """Start nodes, name -> slots, and wait for each to register."""
        for name, count in slots.items():
            self.start_node(name, slots=count)

    def start(self, scheduler: bool = True) -> Cluster:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        self.cli("migrate", "--noinput", "-v", "0")
        if scheduler:
            self.start_scheduler()
        return self

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        # Its own process group, so a test can kill it whole.
        return spawn(argv, cwd=ROOT, env={**self.env, **(env or {})}, log_path=self.logs / f"{name}.log")

    def start_scheduler(self) -> subprocess.Popen:
        proc = self._spawn(f"scheduler-{len(self.others)}", [PYTHON, "manage.py", "scheduler"])
        self.others.append(proc)
        return proc

    def start_node(
        self,
        name: str,
        slots: int = 1,
        wait: bool = True,
        env: dict | None = None,
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> subprocess.Popen:
        """Start a node worker; `wrap` runs it elsewhere (say, in another network namespace)."""
        argv = [PYTHON, "worker_entry.py", "--node", name, "--slots", str(slots)]
        proc = self._spawn(name, wrap(argv) if wrap else argv, env)
        self.nodes[name] = proc
        if wait:
            wait_until(lambda: self.node(name, state_in=("available", "busy")), 60, f"node {name} to register")
        return proc

    def kill_node(self, name: str) -> None:
        """SIGKILL the node worker's whole process group (as a crash or power loss would)."""
        kill_group(self.nodes.pop(name))

    def signal_node(self, name: str, sig: int) -> None:
        """Send `sig` to the node worker's whole process group (SIGSTOP freezes it, SIGCONT thaws it)."""
        os.killpg(self.nodes[name].pid, sig)

    def restart_redis(self) -> None:
        """Stop Redis and start an empty one on the same port (it keeps nothing on disk)."""
        self.redis.stop()
        self.redis.start()

    def stop(self) -> None:
        self.reader.close()
        stop_processes([*self.nodes.values(), *self.others])
        self.redis.stop()
        self.db.drop()

    # --- the command line ---------------------------------------------------------
    def cli(self, *args: str, user: str = "alice", check: bool = True, cwd: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
        argv = [PYTHON, str(ROOT / "manage.py"), *args]
        if args and args[0] not in (
            "migrate",
            "nodes",
            "usage",
            "adduser",
            "drain",
            "resume",
            "scheduler",
            "limits",
            "group",
        ):
            argv += ["--user", user]
        done = subprocess.run(
            argv, cwd=cwd or self.workdir, env=self.env, capture_output=True, text=True, timeout=120, input=input
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def json(self, *args: str, user: str = "alice") -> Any:
        """A command's --json document; read-only commands go through the long-lived reader (see Reader)."""
        if args[0] not in READ_ONLY_COMMANDS:
            return json.loads(self.cli(*args, "--json", user=user).stdout)
        argv = [*args, "--json", *(("--user", user) if args[0] not in ("nodes", "usage") else ())]
        done = self.reader.run(argv)
        if done["rc"] != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done['rc']}:\n{done['stdout']}\n{done['stderr']}")
        return json.loads(done["stdout"])

    def job(self, job_id: int, user: str = "alice") -> dict:
        return self.json("job", str(job_id), user=user)

    def node(self, name: str, state_in: tuple[str, ...] | None = None) -> dict | None:
        for node in self.json("nodes")["nodes"]:
            if node["name"] == name and (state_in is None or node["state"] in state_in):
                return node
        return None

    def wait_job(self, job_id: int, states: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
                 timeout: float = 60, user: str = "alice") -> dict:  # fmt: skip
        def reached() -> dict | None:
            job = self.job(job_id, user)
            return job if job["state"] in states else None

        return wait_until(
            reached,
            timeout,
            f"job {job_id} to reach {states}",
            interval=0.2,
        )

    def submit(self, folder: Path, text: str, files: dict[str, str] | None = None, user: str = "alice",
               name: str = "job.txt") -> list[dict]:  # fmt: skip
        """Write a submission file (and its files) into `folder`, submit it, return the jobs."""
        folder.mkdir(parents=True, exist_ok=True)
        for fname, content in (files or {}).items():
            (folder / fname).write_text(content)
        (folder / name).write_text(text)
        done = self.cli("submit", name, "--json", user=user, cwd=folder)
        return json.loads(done.stdout)["jobs"]
