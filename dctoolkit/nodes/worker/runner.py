"""Runs one job in its own folder, with its limits (`workfiles.py` stages its files and collects what it left).

No ORM here: `tasks.py` reads the job, builds a RunSpec, and records the
RunResult.  The job's stdout and stderr go straight to files in shared
storage, so they can be followed while it runs.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import psutil

from dctoolkit.jobs import jobenv
from dctoolkit.nodes.worker import cgroups, cpus, sandbox

log = logging.getLogger(__name__)

# How often a running job's limits and stop requests are checked: cancel must
# take effect within 2 s, and each check costs a database read.
CHECK_SECONDS = 0.5
# After SIGTERM to a cancelled job's process group, this long before SIGKILL.
TERM_GRACE_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1
# Held while a job's files are written and while a job's process is started
# (Popen returns once the child has exec'd).  A child forked while another
# job's file is open for writing keeps that file open until it execs, and
# executing the file meanwhile fails with "Text file busy" (ETXTBSY); with
# several slots per node, 1 job in a few thousand failed so.
SPAWN_LOCK = threading.Lock()

# Variables from the node's own environment a job may inherit; nothing else
# (not SECRET_KEY, DATABASE_URL, REDIS_URL, EMAIL_*, tokens) reaches a job.
ENV_ALLOWLIST = ("LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME", "NVIDIA_DRIVER_CAPABILITIES")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


class StopReason:
    MAX_RUNTIME = "max_runtime"
    MEMORY = "memory"
    CANCEL = "cancel"
    HOLD = "hold"
    SHUTDOWN = "shutdown"
    LOST = "lost"  # the node lost contact with the database: its jobs run elsewhere now
    VACATE = "vacate"  # a desktop's owner came back: suspended too long, or "I need it now"


@dataclass(frozen=True)
class RunSpec:
    job_id: int
    workdir: Path
    argv: list[str]
    env: dict[str, str]
    stdout_path: Path
    stderr_path: Path
    max_runtime_seconds: float | None = None
    memory_limit_mb: float | None = None
    fence: sandbox.Fence | None = None
    # Why the job must not start at all (start_refusal); "" when it may.
    refusal: str = ""
    cgroup: cgroups.JobCgroup | None = None  # holds every process of the job, wherever it forks to
    # The staged file fed to the job's standard input (HTCondor's `input`); None: /dev/null.
    stdin_path: Path | None = None
    # Where the job starts, inside its sandbox (a granted folder: an absolute initialdir); "": its own folder.
    cwd: str = ""
    # The cores it is pinned to (cpu_indices): its first process starts on them; (): not pinned.
    cpus: tuple[int, ...] = ()


@dataclass
class RunResult:
    exit_code: int | None
    wall_seconds: float
    cpu_seconds: float
    max_rss_mb: float
    stopped: str = ""  # a StopReason, or "" when the job ended by itself
    error: str = ""  # why it could not start, or ended without an exit status
    suspended_seconds: float = 0.0  # of wall_seconds, the time it was stopped (a desktop's owner was back)


@dataclass(frozen=True)
class Pause:
    """A desktop node's say over a running job (desktop.py): stop it while `wanted()`, vacate it when
    `vacate_now()` or after `suspend_max_seconds` stopped; `report(True)` / `report(False)` tell the
    database that it was suspended / resumed (each called from the job's watching thread)."""

    wanted: Callable[[], bool]
    vacate_now: Callable[[], bool]
    report: Callable[[bool], None]
    suspend_max_seconds: float


@dataclass
class _Watch:
    peak_rss_mb: float = 0.0
    stopped: str = ""
    extra: dict = field(default_factory=dict)
    paused_at: float | None = None  # monotonic time the job was stopped, while it is
    paused_total: float = 0.0  # ended spells

    def paused_seconds(self, now: float) -> float:
        return self.paused_total + (now - self.paused_at if self.paused_at is not None else 0.0)


def build_env(
    job_env: dict[str, str], *, workdir: str, extra: dict[str, str], node_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A job's environment: an allowlist of the node's, then ours, then the user's own."""
    node_env = os.environ if node_env is None else node_env
    env = {k: node_env[k] for k in ENV_ALLOWLIST if k in node_env}
    env.update(
        {
            "PATH": DEFAULT_PATH,
            "HOME": workdir,
            "TMPDIR": "/tmp",
            "LANG": env.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",  # so stdout streams while the job runs
        }
    )
    env.update(extra)
    env.update(job_env)
    return env


def start_refusal(environment: object, arguments: object) -> str:
    """Why a job's stored environment and arguments must not reach its program ("" when they may).

    The node asks again what the submission parser asked (jobenv), for a row
    it did not check: one written by an older server or straight into the
    database.  Also refused: what no program can be given at all (not text,
    a NUL byte, text that is not UTF-8).
    """
    problem = _unpassable(environment, arguments) or jobenv.job_env_problem(environment, arguments)  # type: ignore[arg-type]
    return f"not started: {problem}" if problem else ""


def _unpassable(environment: object, arguments: object) -> str | None:
    if not isinstance(environment, Mapping) or not isinstance(arguments, Sequence) or isinstance(arguments, str):
        return "its stored environment or arguments are not a mapping and a list; submit it again"
    texts = [("environment", str(k), v) for k, v in environment.items()]
    texts += [("environment", str(k), k) for k in environment]
    texts += [("arguments", f"argument {i + 1}", a) for i, a in enumerate(arguments)]
    for where, name, text in texts:
        if not isinstance(text, str):
            return f"{where}: {name} is not text"
        if "\0" in text:
            return f"{where}: {name} holds a NUL byte, which no program can be given"
        try:
            text.encode()
        except UnicodeEncodeError:
            return f"{where}: {name} is not valid text (a lone surrogate that has no UTF-8 form)"
    return None


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up here, in the worker, so that the child between fork and exec only calls it.
_PRCTL = _prctl()


def _die_with_worker() -> None:
    # Runs in the child between fork and exec: if the node worker dies (even
    # by SIGKILL), the kernel kills the job's first process too.  Had the
    # worker died before this call, nothing would: then the job does not run.
    parent = os.getppid()
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _spawn(
    argv: list[str], spec: RunSpec, out: BinaryIO, err: BinaryIO, pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen:
    # A fenced job: `argv` is bubblewrap's, which is a host program, so it
    # gets HELPER_ENV and never the job's variables (they reach the job
    # through bubblewrap's --args); its --die-with-parent ends the job with
    # the worker.  An unfenced job is exec'd directly with its own
    # variables, and no host helper in between: the parent-death signal is
    # set in a preexec_fn, at the price of a fork of the whole worker (about
    # 12 ms, where vfork takes 0.7 ms), which only nodes without the sandbox pay.
    # With a cgroup, the job is in it before its first instruction: an
    # unfenced job's child enters it in that preexec_fn; bubblewrap is
    # started by a shell (HELPER_ENV too) that enters it, then execs bubblewrap.
    fenced = spec.fence is not None
    joins = spec.cgroup.open_procs() if spec.cgroup and not fenced else []
    if spec.cgroup and fenced:
        argv = cgroups.joining(argv, spec.cgroup)
    stdin = open_stdin(spec.stdin_path)
    try:
        return subprocess.Popen(
            argv,
            cwd=spec.workdir,
            env=dict(sandbox.HELPER_ENV) if fenced else spec.env,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, killed as one
            preexec_fn=None if fenced else functools.partial(_unfenced_child, joins),
            close_fds=True,
            pass_fds=pass_fds,
        )
    finally:
        for fd in joins:
            os.close(fd)
        if stdin is not None:
            os.close(stdin)


def open_stdin(path: Path | None) -> int | None:
    """The job's stdin file, opened by the node before the job starts (never through a link the job
    could have put there); None for /dev/null.  Raises StartError when it cannot be read."""
    if path is None:
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StartError(f"not started: its input file {path.name} could not be opened: {exc.strerror}") from None


def _unfenced_child(cgroup_fds: list[int]) -> None:
    # Between fork and exec: into the job's cgroup (cgroup.procs descriptors), then tied to the worker.
    cgroups.enter(cgroup_fds)
    _die_with_worker()


class StartError(Exception):
    """The job's program could not be started; the message is for its owner."""


class Child(Protocol):
    """A started job, however it was started (a process of ours, or one a warm sandbox forked)."""

    @property
    def pid(self) -> int | None:  # on this host; None when it is already gone
        ...

    done: threading.Event  # set once the job has ended
    exit_code: int | None
    cpu_seconds: float
    error: str  # why the job ended without an exit status of its own

    def wait(self, timeout: float) -> bool: ...

    def kill(self) -> None: ...


Starter = Callable[[RunSpec, BinaryIO, BinaryIO], Child]


def run(
    spec: RunSpec, should_stop: Callable[[], str], start: Starter | None = None, pause: Pause | None = None
) -> RunResult:
    """Run `spec` to its end, or until a limit or `should_stop()` (a StopReason or "") ends it.

    `start` starts the job (default: a process of ours, fenced when spec.fence
    says so); `warm.py` passes one that starts it in a warm sandbox.  `pause`
    (desktop nodes) stops and resumes it; max_runtime does not count the time stopped.
    """
    started = time.monotonic()
    with open(spec.stdout_path, "wb") as out, open(spec.stderr_path, "wb") as err:
        try:
            if spec.refusal:
                raise StartError(spec.refusal)
            child = (start or start_process)(spec, out, err)
        except StartError as exc:
            return RunResult(None, 0.0, 0.0, 0.0, error=str(exc))
    watch = _Watch()
    _watch_until_done(spec, started, child, watch, should_stop, pause)
    if spec.cgroup:
        spec.cgroup.kill_all()  # what the job left running (an unfenced job's daemons) ends with it
        watch.peak_rss_mb = max(watch.peak_rss_mb, spec.cgroup.peak_mb())
        if not watch.stopped and spec.cgroup.oom_killed():
            watch.stopped = StopReason.MEMORY
    ended = time.monotonic()
    return RunResult(
        suspended_seconds=round(watch.paused_seconds(ended), 3),
        exit_code=child.exit_code,
        wall_seconds=ended - started,
        cpu_seconds=child.cpu_seconds,
        max_rss_mb=round(watch.peak_rss_mb, 1),
        stopped=watch.stopped,
        error="" if watch.stopped else child.error,
    )


def start_process(spec: RunSpec, out: BinaryIO, err: BinaryIO) -> Child:
    """Start the job as a child process of this worker (inside a fresh bubblewrap when fenced)."""
    if spec.cgroup and spec.fence:
        spec.cgroup.allow_extra_pids(cgroups.BWRAP_PROCESSES)  # bubblewrap's own two are in the cgroup too
    try:
        if not spec.fence:
            with SPAWN_LOCK, cpus.pinned_spawn(spec.cpus):
                return _Process(_spawn(spec.argv, spec, out, err))
        # The arguments are worked out before the lock is taken (now and then that means a scan of /etc);
        # their memfds are close-on-exec, so no other job's child keeps them.
        with sandbox.launch(spec.argv, spec.fence, spec.env, spec.cwd) as cmd, SPAWN_LOCK, cpus.pinned_spawn(spec.cpus):
            return _Process(_spawn(cmd.argv, spec, out, err, pass_fds=cmd.fds))
    except sandbox.LaunchError as exc:
        raise StartError(f"not started: {exc}") from None
    except OSError as exc:
        raise StartError(f"could not start {spec.argv[0]}: {exc.strerror}") from None
    except subprocess.SubprocessError:  # raised between fork and exec: entering the cgroup failed
        raise StartError(f"could not start {spec.argv[0]}: it could not enter its cgroup") from None


class _Process:
    """Waits for a job's first process to end and reaps it, with its resource usage.

    Where the kernel has pidfds (Linux 5.3+), `wait()` polls one in the
    watching thread; elsewhere a thread per job blocks in wait4.  `done` is
    set once the process is reaped (the kill thread waits on it).
    """

    error = ""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self.pid: int | None = proc.pid
        self.done = threading.Event()
        self.exit_code: int | None = None
        self.cpu_seconds = 0.0
        try:
            self._fd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self._fd = None
            threading.Thread(target=self._reap, name=f"reap-{proc.pid}", daemon=True).start()

    def wait(self, timeout: float) -> bool:
        """True once the process has ended (and is reaped); False after `timeout` seconds."""
        if self._fd is None:
            return self.done.wait(timeout)
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return False
        os.close(self._fd)
        self._fd = None
        self._reap()
        return True

    def kill(self) -> None:
        kill_tree(self._proc.pid, self.done)

    def _reap(self) -> None:
        _, status, usage = os.wait4(self._proc.pid, 0)
        self.exit_code = self._proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.done.set()


def _watch_until_done(
    spec: RunSpec,
    started: float,
    child: Child,
    watch: _Watch,
    should_stop: Callable[[], str],
    pause: Pause | None = None,
) -> None:
    # Look early and often at first, so that short jobs still get a peak
    # memory figure; then settle at CHECK_SECONDS.
    delay = 0.01
    next_stop_check = started + CHECK_SECONDS
    while not child.wait(delay):
        delay = min(delay * 3, CHECK_SECONDS)
        if watch.stopped:
            continue
        if pause is not None:
            _pause_or_resume(spec, child, watch, pause)
        if spec.cgroup:
            # The kernel holds the limit and counts every page once; the node only learns of its
            # kills.  (Summing each process's VmHWM counts pages shared after a fork twice.)
            over = spec.cgroup.oom_killed()
            watch.peak_rss_mb = max(watch.peak_rss_mb, spec.cgroup.peak_mb())
        else:
            rss, peak = tree_memory_mb(child.pid) if child.pid is not None else (0.0, 0.0)
            watch.peak_rss_mb = max(watch.peak_rss_mb, peak)
            limit = spec.memory_limit_mb or 0  # 0 or None: no limit
            over = bool(limit) and rss > limit
        now = time.monotonic()
        if pause is not None and (
            pause.vacate_now() or (watch.paused_at is not None and now - watch.paused_at >= pause.suspend_max_seconds)
        ):
            watch.stopped = StopReason.VACATE
        elif spec.max_runtime_seconds and now - started - watch.paused_seconds(now) > spec.max_runtime_seconds:
            watch.stopped = StopReason.MAX_RUNTIME
        elif over:
            watch.stopped = StopReason.MEMORY
        elif now >= next_stop_check:
            next_stop_check = now + CHECK_SECONDS
            try:
                watch.stopped = should_stop()
            except Exception:  # a database hiccup must not kill the job
                log.exception("job %s: stop check failed; will retry", spec.job_id)
        if watch.stopped:
            log.info("job %s: stopping (%s)", spec.job_id, watch.stopped)
            paused = watch.paused_at is not None
            if watch.paused_at is not None:  # its time stopped ends here; it gets the grace of SIGTERM running
                watch.paused_total += now - watch.paused_at
                watch.paused_at = None
            threading.Thread(target=_stop, args=(child, spec.cgroup, paused), daemon=True).start()


def _pause_or_resume(spec: RunSpec, child: Child, watch: _Watch, pause: Pause) -> None:
    """Stop the job's whole tree when its desktop's owner is back; start it again when they leave."""
    wanted = pause.wanted()
    if wanted == (watch.paused_at is not None) or child.pid is None or (wanted and pause.vacate_now()):
        return  # nothing changes; or it leaves at once ("I need it now"), with no stop in between
    now = time.monotonic()
    if wanted:
        signal_job(child.pid, spec.cgroup, signal.SIGSTOP)
        watch.paused_at = now
        log.info("job %s: suspended (its desktop's owner is back)", spec.job_id)
    else:
        signal_job(child.pid, spec.cgroup, signal.SIGCONT)
        watch.paused_total += now - (watch.paused_at or now)
        watch.paused_at = None
        log.info("job %s: resumed", spec.job_id)
    try:
        pause.report(wanted)
    except Exception:  # the job's state in the database catches up at the next change
        log.exception("job %s: could not record that it was %s", spec.job_id, "suspended" if wanted else "resumed")


def signal_job(pid: int, cgroup: cgroups.JobCgroup | None, sig: int) -> None:
    """`sig` to the job's whole tree, and to every process of its cgroup (one that left the tree too)."""
    _signal_tree(pid, sig)
    for other in cgroup.pids() if cgroup else ():
        try:
            os.kill(other, sig)
        except OSError:
            pass


def _stop(child: Child, cgroup: cgroups.JobCgroup | None, paused: bool = False) -> None:
    if paused and child.pid is not None:  # a stopped job would not see its SIGTERM before the SIGKILL
        signal_job(child.pid, cgroup, signal.SIGCONT)
    child.kill()
    if cgroup:  # a process that left the job's tree (setsid, double fork) is still in its cgroup
        cgroup.kill_all()


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, sum of each process's peak) in MB, over `pid` and its descendants.

    Read from /proc (VmRSS, VmHWM): a process's peak survives between two
    looks, and is not polluted by the worker's own memory the way a forked
    child's ru_maxrss is.
    """
    pids = [pid, *descendants(pid)]
    rss_kb = peak_kb = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss_kb += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        peak_kb += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return rss_kb / 1024, peak_kb / 1024


def descendants(pid: int) -> list[int]:
    """The pids of `pid`'s descendants, from the kernel's per-thread `children` lists.

    psutil's children() reads the status of every process on the machine,
    milliseconds on a busy one, and a short job is looked at several times;
    this reads only the job's own tree.  Where the kernel has no such lists,
    psutil's answer.
    """
    if not _children_lists_exist():
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # ended meanwhile
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


@functools.cache
def _children_lists_exist() -> bool:
    me = os.getpid()
    return os.path.exists(f"/proc/{me}/task/{me}/children")


def kill_tree(pid: int, done: threading.Event | None = None) -> None:
    """SIGTERM the job's process group and every descendant, then SIGKILL what is left.

    Descendants are signalled one by one as well, because a daemon that
    called setsid() has left the group.
    """
    _signal_tree(pid, signal.SIGTERM)
    if done is not None:
        done.wait(TERM_GRACE_SECONDS)
    _signal_tree(pid, signal.SIGKILL)


def _signal_tree(pid: int, sig: int) -> None:
    try:
        victims = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        victims = []
    try:
        os.killpg(pid, sig)
    except OSError:
        pass
    for p in victims:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass
