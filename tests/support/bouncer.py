"""A real PgBouncer in front of the test PostgreSQL, in transaction mode, on a free port, for one test.

PgBouncer refuses to run as root, so it runs as `nobody` (runuser) where the
tests are root; its configuration, user list and log live in a folder of its
own that `nobody` can read (pytest's folders are the user's alone), removed
when it stops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from dctoolkit.dev.stack import free_port, wait_until
from tests.support.cluster import via


def binary() -> str:
    """The pgbouncer program, or "" (.ci/run installs Debian's)."""
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else "")


class PgBouncer:
    """PgBouncer on 127.0.0.1:`port`, pooling every database of the server `server_url` names, at most
    `pool_size` server connections per database and user, handed to a client for one transaction at a time."""

    def __init__(self, server_url: str, pool_size: int) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="dct-pgbouncer-"))
        self.port = free_port()
        self.pool_size = pool_size
        parts = urlsplit(server_url)
        self.user = parts.username or "postgres"
        self.server = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.proc: subprocess.Popen | None = None

    def start(self) -> PgBouncer:
        self.workdir.chmod(0o755)
        host, port = self.server
        config = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": "",
            "auth_type": "trust",  # as the server's own: the test PostgreSQL trusts local connections
            "auth_file": self.workdir / "users.txt",
            "admin_users": self.user,
            "pool_mode": "transaction",
            "default_pool_size": self.pool_size,
            "reserve_pool_size": 0,
            "max_client_conn": 500,
            "logfile": self.workdir / "pgbouncer.log",
            "pidfile": "",
        }
        text = f"[databases]\n* = host={host} port={port}\n[pgbouncer]\n"
        text += "".join(f"{key} = {value}\n" for key, value in config.items())
        (self.workdir / "pgbouncer.ini").write_text(text)
        (self.workdir / "users.txt").write_text(f'"{self.user}" ""\n')
        for name in ("pgbouncer.ini", "users.txt"):
            (self.workdir / name).chmod(0o644)
        log = self.workdir / "pgbouncer.log"
        log.touch()
        log.chmod(0o666)
        argv = [binary(), str(self.workdir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "nobody", "--", *argv]
        with open(self.workdir / "output.txt", "wb") as output:
            self.proc = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
        wait_until(lambda: "listening on" in log.read_text() or self.proc.poll() is not None, 20, "PgBouncer")
        if self.proc.poll() is not None:
            said = (self.workdir / "output.txt").read_text() + log.read_text()
            self.stop()
            raise AssertionError(f"PgBouncer did not start:\n{said[-2000:]}")
        return self

    def url(self, database_url: str) -> str:
        """`database_url` (a database on the server) reached through this PgBouncer."""
        return via(database_url, "127.0.0.1", self.port)

    def pools(self, database: str) -> dict[str, int]:
        """PgBouncer's SHOW POOLS row for `database`: clients active and waiting, server connections (psql:
        the admin console speaks only the simple query protocol)."""
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-AF", "|", "-c", "SHOW POOLS",
             "pgbouncer"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        header, *rows = done.stdout.splitlines()
        names = header.split("|")
        for line in rows:
            row = dict(zip(names, line.split("|"), strict=False))
            if row.get("database") == database:
                return {"clients": _total(row, "cl_"), "servers": _total(row, "sv_")}
        return {"clients": 0, "servers": 0}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _total(row: dict[str, str], prefix: str) -> int:
    """The sum of a SHOW POOLS row's counts whose names start with `prefix` (cl_: clients, sv_: servers)."""
    return sum(int(value) for name, value in row.items() if name.startswith(prefix) and value.isdigit())
