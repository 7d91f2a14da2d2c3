"""Warm sandboxes: a bubblewrap sandbox kept between jobs, so a short job starts in a fork, not a new sandbox.

Making a sandbox costs about 5 ms of kernel time (namespaces and a dozen
mounts), more than everything else a node does for a trivial job.  So a node
keeps each sandbox it made, with a small program inside (`zygote.py`) that
starts one job after another there, and the next job with the same owner and
the same fence reuses it.

What a reused sandbox promises (README, "What a job can see"):

- it only ever serves one user, with one fence: a job never meets a sandbox
  another user's job ran in, and the folders granted to its owner are part of
  the fence, so a sandbox made before a grant changed serves no job after it;
- between two jobs, every process in it but the zygote is killed, /tmp and
  /dev/shm are emptied and its job folder is emptied by the node; the node
  counts the processes left itself rather than trust the zygote's word;
- anything unexpected (the zygote gone, a process that would not die, a file
  it could not delete, a message that does not parse) retires the sandbox;
- a sandbox that cannot take a job (its message too long, the socket broken,
  a reply that makes no sense) fails that job with the reason and is
  retired: the job never falls back to another way of starting;
- it is retired after MAX_JOBS jobs, MAX_AGE_SECONDS, or IDLE_SECONDS unused.

The job's folder is the sandbox's own (`DCT_SCRATCH/NODE/warm-...`), bound
once when the sandbox is made and emptied between jobs.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from dctoolkit.nodes.worker import cgroups, runner, sandbox, workfiles, zygote
from dctoolkit.nodes.worker.runner import descendants

log = logging.getLogger(__name__)

ZYGOTE_SOURCE = Path(__file__).with_name("zygote.py").read_text() + "\nmain()\n"
MAX_JOBS = 1000
MAX_AGE_SECONDS = 600.0
IDLE_SECONDS = 60.0
# How long a reply to "start this job" may take: the first one waits for Python to start in the sandbox.
START_TIMEOUT_SECONDS = 30.0
# The zygote's replies are a few short JSON objects.
MAX_REPLY_BYTES = 1 << 16


class SandboxBrokenError(RuntimeError):
    """The warm sandbox cannot take the job, or stopped answering as it should; it is retired."""

    hint = "submit the job again"


class SandboxEndedError(SandboxBrokenError):
    """The sandbox went away once it had the job: the job may have begun (and killed its zygote)."""


class RequestTooLongError(SandboxBrokenError):
    """The job's message to the zygote would be longer than MAX_REQUEST_BYTES."""

    hint = "make its environment and arguments smaller"


@dataclass
class Ended:
    exit_code: int | None
    cpu_seconds: float


def can_serve(fence: sandbox.Fence) -> bool:
    """Whether jobs with this fence can run in a warm sandbox (else each gets a fresh bubblewrap).

    Not in a container: the zygote needs the node's Python, and a
    container's root has its own (or none).  It used to be tried anyway and
    fail over to a fresh bubblewrap; now that nothing falls back, it is not tried.
    """
    return not fence.container


@dataclass(eq=False)
class WarmSandbox:
    """One bubblewrap sandbox with the zygote in it."""

    key: tuple
    folder: Path
    inside: str  # the job folder's path inside the sandbox
    proc: subprocess.Popen
    sock: socket.socket
    made: float = field(default_factory=time.monotonic)
    idle_since: float = field(default_factory=time.monotonic)
    jobs: int = 0
    zygote_pid: int | None = None  # inside the sandbox
    clean: bool = True  # the last job left it as it found it
    _last_cpus: tuple[int, ...] = ()  # the cores the last job was pinned to: its stub's guess for the next
    _unsettled: bool = False  # the zygote's word on the last job's clean-up ({"clean"}) is not read yet
    _init_and_zygote: tuple[int | None, int | None] | None = None  # their pids on the host
    # The spare cgroup the zygote was asked to fork a stub into (its answer not yet read), and the cgroup
    # handed out for the next job with the stub in it (see prepare_stub).
    _spare: cgroups.JobCgroup | None = None
    _stub_in: cgroups.JobCgroup | None = None

    @classmethod
    def make(cls, key: tuple, fence: sandbox.Fence, folder: Path) -> WarmSandbox:
        folder.mkdir(parents=True, exist_ok=True)
        fence = replace(fence, workdir=str(folder))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # A message must fit in the send buffer whole; the kernel doubles this, up to net.core.wmem_max.
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, zygote.MAX_REQUEST_BYTES * 2)
        argv = [sandbox.python_executable(), "-I", "-S", "-c", ZYGOTE_SOURCE, str(theirs.fileno())]
        try:
            # Made from the job's thread, one of Celery's pool threads, which live as long as the
            # worker: bubblewrap's --die-with-parent fires when the thread that started it ends.
            # See SPAWN_LOCK: no fork while a job's file is open for writing.  Nothing of the node's
            # environment or of any job's goes in: bubblewrap and the zygote get HELPER_ENV.
            with sandbox.launch(argv, fence, sandbox.HELPER_ENV) as cmd, runner.SPAWN_LOCK:
                proc = subprocess.Popen(
                    cmd.argv,
                    env=dict(sandbox.HELPER_ENV),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,  # the node's log would be readable through /proc/ZYGOTE/fd/2
                    pass_fds=(theirs.fileno(), *cmd.fds),
                    start_new_session=True,
                )
        finally:
            theirs.close()
        return cls(key, folder, sandbox.inside_workdir(fence), proc, ours)

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        stdout: int,
        stderr: int,
        cgroup: list[int] | None = None,
        stdin: int | None = None,
        cwd: str = "",
        cpus: tuple[int, ...] = (),
        stub: bool = False,
    ) -> int:
        """Start one job; returns its pid inside the sandbox (`host_pid` finds it on the host).

        `cgroup`: the job's `cgroup.procs` files, open for writing; the job enters them before it execs.
        `stdin`: the file fed to the job's standard input (None: /dev/null).
        `cwd`: where the job starts, inside the sandbox ("": its folder).
        `cpus`: the cores the job is pinned to (the zygote sets them in the job's process before it execs).
        `stub`: `cgroup` is the one the zygote's stub is in (`take_stub`): the stub becomes the job.
        """
        self.settle()
        self.jobs += 1
        request = zygote.encode_request(argv, env, cwd or self.inside, stdin=stdin is not None, cpus=cpus, stub=stub)
        if len(request) > zygote.MAX_REQUEST_BYTES:
            raise RequestTooLongError(
                f"its environment and arguments make a {len(request):,}-byte message, more than the "
                f"{zygote.MAX_REQUEST_BYTES:,} bytes a sandbox takes"
            )
        try:
            fds = [stdout, stderr, *([stdin] if stdin is not None else []), *(cgroup or [])]
            socket.send_fds(self.sock, [request], fds)
        except OSError as exc:
            raise SandboxBrokenError(f"could not reach the sandbox: {exc}") from None
        try:
            reply = self._receive(START_TIMEOUT_SECONDS)
        except SandboxBrokenError as exc:
            raise SandboxEndedError(str(exc)) from None
        if "error" in reply:
            self._ended(self._receive(START_TIMEOUT_SECONDS))  # the end report that follows (its "clean" later)
            raise runner.StartError(str(reply["error"]))
        try:
            return int(reply["started"])
        except (KeyError, TypeError, ValueError):
            raise SandboxBrokenError(f"the sandbox said {reply!r} instead of the job's pid") from None

    def wait(self, timeout: float) -> Ended | None:
        """The job's end, or None when it is still running after `timeout` seconds."""
        if not self._readable(timeout):
            return None
        return self._ended(self._receive(0))

    def _readable(self, timeout: float) -> bool:
        # poll, not select: a busy node may hold more than select's 1,024 descriptors.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def _ended(self, reply: dict) -> Ended:
        try:
            status = reply["status"]
            code = os.waitstatus_to_exitcode(status) if status is not None else None
            cpu_seconds = float(reply["utime"]) + float(reply["stime"])
            self.zygote_pid = int(reply["me"])
            gone = reply["gone"] is True
        except (KeyError, TypeError, ValueError):
            raise SandboxBrokenError(f"the sandbox said {reply!r} at the job's end") from None
        self.clean = gone and self.clean
        self._unsettled = True
        return Ended(code, cpu_seconds)

    def settle(self) -> None:
        """Read the zygote's word on the last job's clean-up (it empties /tmp and /dev/shm after telling the
        job's end), and count the processes left; `clean` is False unless both say the sandbox is as it was.
        Called before the sandbox serves another job or is kept (give_back)."""
        if not self._unsettled:
            return
        self._unsettled = False
        try:
            reply = self._receive(START_TIMEOUT_SECONDS)
            clean = reply.get("clean") is True
        except SandboxBrokenError as exc:
            log.warning("warm sandbox %s: %s after its job; retiring it", self.folder.name, exc)
            clean = False
        self.clean = clean and self.clean and self._only_zygote_left()

    def _receive(self, timeout: float) -> dict:
        if timeout and not self._readable(timeout):
            raise SandboxBrokenError(f"the sandbox did not answer in {timeout:g} s")
        try:
            data = self.sock.recv(MAX_REPLY_BYTES)
            reply = json.loads(data) if data else None
        except (OSError, ValueError):
            reply = None
        if not isinstance(reply, dict):
            raise SandboxBrokenError("the sandbox ended unexpectedly")
        return reply

    def start_job(self, spec: runner.RunSpec, out: BinaryIO, err: BinaryIO) -> runner.Child:
        """A runner.Starter: the job starts in this sandbox, or fails (StartError) and the sandbox is retired.

        Never anywhere else: a job that a sandbox could not take (the padding
        of the LD_PRELOAD escape in issue 14) must not reach a weaker way in.
        """
        stub = spec.cgroup is not None and spec.cgroup is self._stub_in
        self._stub_in = None
        unread = self.take_stub()  # the zygote's answer to a stub asked for, read before the job's
        if unread is not None:  # not made this job's cgroup: the stub goes, and the zygote starts the job anew
            self._stub_in = None
            unread.remove()
        procs = spec.cgroup.open_procs() if spec.cgroup else []
        self._last_cpus = spec.cpus
        stdin = runner.open_stdin(spec.stdin_path)
        try:
            pid = self.start(
                spec.argv, spec.env, out.fileno(), err.fileno(), procs, stdin, spec.cwd, spec.cpus, stub=stub
            )
            return _WarmChild(self, pid)
        except SandboxBrokenError as exc:
            log.warning("warm sandbox %s could not take job %s: %s; retiring it", self.folder.name, spec.job_id, exc)
            self.kill()
            if isinstance(exc, SandboxEndedError):
                why = f"the job's sandbox ended as the job started (was its zygote killed?): {exc}"
            else:
                why = f"not started: its warm sandbox could not take it: {exc}"
            raise runner.StartError(f"{why} (the sandbox was retired); {exc.hint}") from None
        finally:
            for fd in procs:
                os.close(fd)
            if stdin is not None:
                os.close(stdin)

    def prepare_stub(self, node: cgroups.NodeCgroups) -> None:
        """Ask the zygote for its next job's process ahead, in a spare cgroup of `node`'s (between jobs).

        Entering a cgroup may wait 5-15 ms for an RCU grace period (cgroups.py): the stub
        enters now, while the node records the job that ended, and the next job's process is
        in its cgroup before it runs anything without waiting for it.  Nothing is asked where
        the spare cannot be made; the answer is read by `take_stub`.
        """
        self.settle()
        try:
            spare = node.make_spare()
            procs = spare.open_procs()
        except (cgroups.CgroupError, OSError) as exc:
            log.warning("warm sandbox %s: no cgroup ready for its next job (%s)", self.folder.name, exc)
            return
        try:
            socket.send_fds(self.sock, [zygote.encode_prepare(self._last_cpus)], procs)
            self._spare = spare
        except OSError as exc:
            log.warning("warm sandbox %s: could not reach it (%s); retiring it", self.folder.name, exc)
            spare.remove()
            self.kill()
        finally:
            for fd in procs:
                os.close(fd)

    def take_stub(self) -> cgroups.JobCgroup | None:
        """The spare cgroup with the zygote's stub in it, to be made the next job's (cgroups.for_job's
        `spare`, then passed as the job's spec.cgroup), or None where there is none."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        try:
            reply = self._receive(START_TIMEOUT_SECONDS)
        except SandboxBrokenError as exc:
            reply = {"error": str(exc)}
            self.kill()
        if isinstance(reply.get("stub"), int) and not isinstance(reply["stub"], bool):
            self._stub_in = spare
            return spare
        log.warning("warm sandbox %s: its stub could not wait in a cgroup: %s", self.folder.name, reply.get("error"))
        spare.remove()
        return None

    def kill(self) -> None:
        """Kill the sandbox and all in it at once (it is retired when given back)."""
        self.clean = False
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def _in_sandbox(self) -> dict[int, int]:
        """Host pid -> pid inside the sandbox, for every process in it."""
        found = {}
        for pid in descendants(self.proc.pid):
            try:
                with open(f"/proc/{pid}/status") as f:
                    nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
            except (OSError, StopIteration):
                continue
            if len(nspid) > 1:
                found[pid] = int(nspid[-1])
        return found

    def host_pid(self, pid_inside: int) -> int | None:
        """The host's pid of a process in the sandbox; None when it has ended."""
        return next((host for host, inner in self._in_sandbox().items() if inner == pid_inside), None)

    def _only_zygote_left(self) -> bool:
        # Every process in the sandbox descends from its init (orphans are
        # reparented to it), so when the init's one child is the zygote and
        # the zygote has none, nothing else is there: two small reads, where
        # walking the sandbox's processes took five times as long.
        if self._init_and_zygote is None:
            hosts = {inner: host for host, inner in self._in_sandbox().items()}
            # mypy: before the zygote answered, zygote_pid is None and the lookup finds nothing, as meant.
            self._init_and_zygote = (hosts.get(1), hosts.get(self.zygote_pid))  # type: ignore[arg-type]
        init, zygote = self._init_and_zygote
        left = None
        if init is not None and zygote is not None:
            left = (set(_children(init)) - {zygote}) | set(_children(zygote))
        if left is None:
            log.warning("warm sandbox %s: its init or zygote is gone; retiring it", self.folder.name)
            return False
        if left:
            log.warning("warm sandbox %s: process(es) %s outlived their job; retiring it", self.folder.name, left)
        return not left

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def retire(self) -> None:
        """End the sandbox and everything in it, and remove its folder."""
        self.sock.close()
        self.kill()
        self.proc.wait()
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.remove()  # the stub went with the sandbox: the spare is emptied and removed
        if not workfiles.remove_tree(self.folder):  # no link followed, no recursion, whatever a job left
            log.warning("warm sandbox %s: its folder could not be removed", self.folder.name)


def _children(pid: int) -> list[int]:
    """The children of a single-threaded process (the sandbox's init, the zygote)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(kid) for kid in f.read().split()]
    except OSError:
        return [-1]  # gone: not a sandbox to reuse


class _WarmChild:
    """A job the zygote of `warm` started (see runner.Child)."""

    def __init__(self, warm: WarmSandbox, pid_inside: int) -> None:
        self.warm = warm
        self.pid_inside = pid_inside
        self._pid: int | None = None
        self._looked = False
        self.done = threading.Event()
        self.exit_code: int | None = None
        self.cpu_seconds = 0.0
        self.error = ""

    @property
    def pid(self) -> int | None:
        # Looked up when first asked for: a job that ends within the runner's
        # first wait (most short ones) never needs it.
        if not self._looked:
            self._pid, self._looked = self.warm.host_pid(self.pid_inside), True
        return self._pid

    def wait(self, timeout: float) -> bool:
        try:
            ended = self.warm.wait(timeout)
        except SandboxBrokenError as exc:
            log.warning("warm sandbox %s: %s", self.warm.folder.name, exc)
            self.warm.kill()
            self.error = "the job's sandbox ended before the job did (was its zygote killed?)"
            self.done.set()
            return True
        if ended is None:
            return False
        self.exit_code, self.cpu_seconds = ended.exit_code, ended.cpu_seconds
        self.done.set()
        return True

    def kill(self) -> None:
        if self.pid is not None:
            runner.kill_tree(self.pid, self.done)
        if not self.done.wait(runner.TERM_GRACE_SECONDS + 1):
            self.warm.kill()  # the job's processes would not die: the whole sandbox goes


class WarmPool:
    """The warm sandboxes of one node worker: at most `keep` idle ones, each for one (owner, fence)."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = max(1, keep)
        self._idle: list[WarmSandbox] = []
        self._lock = threading.Lock()
        self._prefix = f"warm-{uuid.uuid4().hex[:8]}"
        self._made = 0

    def take(self, owner: int, fence: sandbox.Fence) -> WarmSandbox:
        """An idle sandbox for this owner and fence, or a new one."""
        key = (owner, replace(fence, workdir=""), sandbox.private_entries())
        now = time.monotonic()
        with self._lock:
            self._retire_stale(now)
            for warm in self._idle:
                if warm.key == key:
                    self._idle.remove(warm)
                    return warm
            self._made += 1
            folder = self.root / f"{self._prefix}-{self._made}"
        return WarmSandbox.make(key, fence, folder)

    def give_back(self, warm: WarmSandbox, node_cgroups: cgroups.NodeCgroups | None = None) -> None:
        """After a job: keep the sandbox for the next one, or retire it.

        `node_cgroups`: the node's, where jobs run in cgroups: the zygote is asked for a stub
        in a spare one first (`prepare_stub`), before another job may take the sandbox."""
        warm.settle()
        now = time.monotonic()
        reusable = warm.clean and warm.alive and warm.jobs < MAX_JOBS and now - warm.made < MAX_AGE_SECONDS
        if reusable and node_cgroups is not None:
            warm.prepare_stub(node_cgroups)
            reusable = warm.clean
        if not reusable:
            warm.retire()
            return
        warm.idle_since = now
        with self._lock:
            self._idle.append(warm)
            extra = self._idle[: max(0, len(self._idle) - self.keep)]
            del self._idle[: len(extra)]
        for old in extra:
            old.retire()

    def retire_stale(self) -> None:
        """Retire the sandboxes unused for IDLE_SECONDS (the heartbeat calls this)."""
        with self._lock:
            self._retire_stale(time.monotonic())

    def _retire_stale(self, now: float) -> None:
        stale = [w for w in self._idle if now - w.idle_since > IDLE_SECONDS or not w.alive]
        for warm in stale:
            self._idle.remove(warm)
            warm.retire()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for warm in idle:
            warm.retire()


_pool: WarmPool | None = None
_pool_lock = threading.Lock()


def pool(root: Path, keep: int) -> WarmPool:
    """This worker's pool of warm sandboxes, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WarmPool(root, keep)
        return _pool


def retire_stale() -> None:
    """Retire this worker's warm sandboxes that have been unused for IDLE_SECONDS."""
    if _pool is not None:
        _pool.retire_stale()


def close_pool() -> None:
    """Retire every idle warm sandbox (the worker is stopping)."""
    if _pool is not None:
        _pool.close()
