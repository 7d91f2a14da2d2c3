"""Per-job cgroups: memory and process limits that hold for every process a job makes.

The node's memory watch (runner.tree_memory_mb) only sees the job's first
process and its descendants, so a double-forked child (setsid, parent exits)
leaves it and may use any amount of memory.  A cgroup holds every process
the job ever makes, wherever it is reparented to, and the kernel enforces
its limits: `memory` (the job's request_memory, swap included), `pids`
(DCT_JOB_MAX_PIDS, so a fork bomb stays one job's problem) and, where the
node has the `cpu` controller, `cpu` (request_cpus cores' worth of CPU time
per period, however many threads it runs or cores it pins itself to; a node
without it still runs jobs, pinned to their cores by affinity alone).

Layout: the node's own cgroup (read from /proc/self/cgroup), then
`dctoolkit-NODE-PID` for this node worker, then `job-ID-ATTEMPT` per job, in
each hierarchy: cgroup v1's `memory` and `pids` (/sys/fs/cgroup/memory/...,
/sys/fs/cgroup/pids/...) and `cpu` where mounted, or v2's unified one (where
/sys/fs/cgroup/cgroup.controllers exists).  The worker's pid is in the name
because two workers may serve nodes of the same name on one machine (test
clusters do).

A job enters its cgroup before it runs a single instruction of its own: the
process that will exec it writes "0" to the cgroup's `cgroup.procs` (the
zygote's child between fork and exec; an unfenced job's child in the
runner's preexec_fn; for a fresh bubblewrap, a small shell that then execs
it, see `joining`, so that bubblewrap's own two processes are in the cgroup
too and pids.max is raised by BWRAP_PROCESSES; a private network's helpers
are in it as well).  A warm sandbox's init and zygote stay outside, in the
node's own cgroup.

Entering a cgroup can be slow: on a kernel whose cgroups are not mounted
with `favordynmods`, the first move into a cgroup after a quiet spell waits
for an RCU grace period (cgroup_threadgroup_rwsem), 5-15 ms.  So a warm
sandbox's next job's process is made ahead: after each job the node makes a
*spare* cgroup (`next-N`, no limits yet) and the zygote forks a stub that
enters it and waits (zygote.py); when the job comes, `adopt` renames the
spare to `job-ID-ATTEMPT` (cgroup v1; v2 cannot rename, it keeps its name)
and writes the job's limits into it, and the stub becomes the job.

Where cgroups cannot be made, the node says so once in its log and falls
back to the memory watch, with no process limit.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids")
V1_OPTIONAL = ("cpu",)  # used where mounted and writable; else the node pins jobs by affinity alone
# The cpu controller's period (v1 cpu.cfs_period_us, v2 cpu.max's second number): a job gets
# request_cpus times this much CPU time in each.
CPU_PERIOD_US = 100_000
# A fresh bubblewrap's own two processes (the outer bwrap and the sandbox's
# init) are in the job's cgroup too: the job's limit is raised by that much.
BWRAP_PROCESSES = 2
# How long kill_all keeps killing what a job forks meanwhile.
KILL_SECONDS = 5.0


class CgroupError(Exception):
    """A cgroup could not be made or set up; the message says where and why."""


# --- pure parts ----------------------------------------------------------------


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """`/proc/PID/cgroup` text -> {controller: path}; v2's unified entry (`0::/path`) is under ""."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


def parse_keyed(text: str) -> dict[str, int]:
    """A flat keyed file (`memory.oom_control`, `memory.events`, `pids.events`) -> {key: number}."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


def safe_name(name: str) -> str:
    """A node name as a cgroup folder name: anything but letters, digits, `._-` becomes `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "_"


def own_dirs(version: int, own: dict[str, str], root: Path | None = None) -> dict[str, Path]:
    """The node's own cgroup folder in each hierarchy it uses ({"unified": ...} on v2), under `root` (ROOT)."""
    root = root or ROOT
    if version == 2:
        if "" not in own:
            raise CgroupError("/proc/self/cgroup has no cgroup v2 entry (0::/PATH)")
        return {"unified": root / own[""].lstrip("/")}
    missing = [c for c in V1_CONTROLLERS if c not in own]
    if missing:
        raise CgroupError(f"/proc/self/cgroup has no {' or '.join(missing)} controller")
    return {c: root / c / own[c].lstrip("/") for c in (*V1_CONTROLLERS, *V1_OPTIONAL) if c in own}


def node_dirs(own: dict[str, Path], node: str, pid: int) -> dict[str, Path]:
    """This worker's folder under the node's own cgroup, in each hierarchy."""
    return {h: d / f"dctoolkit-{safe_name(node)}-{pid}" for h, d in own.items()}


def job_dirs(node: dict[str, Path], job_id: int, attempt: int) -> dict[str, Path]:
    """One job attempt's folder under the worker's, in each hierarchy."""
    return {h: d / f"job-{job_id}-{attempt}" for h, d in node.items()}


def limit_files(
    version: int, memory_mb: int | None, max_pids: int, cpus: int | None = None
) -> list[tuple[str, str, str, bool]]:
    """What to write to set a job's limits: (hierarchy, file, value, required), in order.

    Files marked not required are written where the kernel has them: v1's
    memsw (swap accounting, often off) and v2's swap.max and oom.group.
    `cpus`: the job's request_cpus, where the node has the cpu controller (None: no cpu limit).
    """
    files: list[tuple[str, str, str, bool]] = []
    if memory_mb:
        limit = str(int(memory_mb) << 20)
        if version == 1:
            # memsw (memory + swap) may never be below the memory limit: set it second.
            files += [("memory", "memory.limit_in_bytes", limit, True)]
            files += [("memory", "memory.memsw.limit_in_bytes", limit, False)]
        else:
            files += [("unified", "memory.max", limit, True), ("unified", "memory.swap.max", "0", False)]
            files += [("unified", "memory.oom.group", "1", False)]  # an OOM kill takes the whole job
    files.append(("pids" if version == 1 else "unified", "pids.max", str(max_pids), True))
    if cpus:
        quota = str(max(int(cpus), 1) * CPU_PERIOD_US)
        if version == 1:
            # The period first: the quota is checked against it (and against the parent's).
            files += [("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US), True), ("cpu", "cpu.cfs_quota_us", quota, True)]
        else:
            files.append(("unified", "cpu.max", f"{quota} {CPU_PERIOD_US}", True))
    return files


def favors_dynmods(mounts: str) -> bool:
    """Whether a cgroup hierarchy in `/proc/mounts` text is mounted with favordynmods (moving a process
    into a cgroup then never waits for an RCU grace period; the choice holds for the whole system)."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2") and "favordynmods" in fields[3].split(","):
            return True
    return False


def oom_kills(version: int, text: str) -> int | None:
    """OOM kills recorded in v1 `memory.oom_control` or v2 `memory.events`; None when the kernel keeps no count."""
    return parse_keyed(text).get("oom_kill")


# --- the node's cgroups ----------------------------------------------------------


@dataclass
class JobCgroup:
    """One job attempt's cgroup(s): one folder per hierarchy (v1: memory, pids and maybe cpu; v2: one)."""

    version: int
    dirs: dict[str, Path]
    max_pids: int

    def procs_paths(self) -> list[str]:
        """The `cgroup.procs` files a process writes "0" to, to enter this cgroup."""
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def open_procs(self) -> list[int]:
        """`cgroup.procs` of each folder, opened for writing (close-on-exec); the caller closes them."""
        fds: list[int] = []
        try:
            for path in self.procs_paths():
                fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def allow_extra_pids(self, extra: int) -> None:
        """Raise pids.max by `extra` processes that are not the job's own (a fresh bubblewrap's)."""
        _write(self._dir("pids") / "pids.max", str(self.max_pids + extra))

    def _dir(self, controller: str) -> Path:
        return self.dirs["unified" if self.version == 2 else controller]

    def oom_killed(self) -> bool:
        """True once the kernel has killed a process of the job for going over its memory limit."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            return (oom_kills(self.version, (self._dir("memory") / name).read_text()) or 0) > 0
        except OSError:
            return False

    def peak_mb(self) -> float:
        """The most memory the job's processes held at once, in MB (0 where the kernel keeps no peak)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self._dir("memory") / name).read_text()) / (1 << 20)
        except (OSError, ValueError):
            return 0.0

    def pids(self) -> set[int]:
        """Every process in the job's cgroup(s), as host pids."""
        found: set[int] = set()
        for path in self.procs_paths():
            try:
                found |= {int(p) for p in Path(path).read_text().split()}
            except (OSError, ValueError):
                continue
        return found

    def kill_all(self) -> bool:
        """SIGKILL every process in the cgroup, again until none is left; True when none is."""
        kill = next(iter(self.dirs.values())) / "cgroup.kill"  # v2 (Linux 5.14+): the kernel does it at once
        if self.version == 2 and kill.exists():
            try:
                _write(kill, "1")
            except CgroupError:
                pass
        deadline = time.monotonic() + KILL_SECONDS
        while True:
            left = self.pids()
            if not left:
                return True
            if time.monotonic() > deadline:
                return False
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill whatever is left of the job and remove its folders (a leftover is logged, never raised)."""
        if not self.kill_all():
            log.warning("cgroup %s: processes %s would not die", self.procs_paths()[0], sorted(self.pids()))
        for folder in self.dirs.values():
            _rmdir(folder)


@dataclass
class NodeCgroups:
    """This node worker's cgroup folders, under which each job gets its own."""

    version: int
    dirs: dict[str, Path]
    cpu: bool = False  # the cpu controller is there: jobs get a cpu limit
    _spares: itertools.count = field(default_factory=itertools.count, repr=False)

    def make_job(
        self, job_id: int, attempt: int, memory_mb: int | None, max_pids: int, cpus: int | None = None
    ) -> JobCgroup:
        """A new cgroup for one job attempt, its limits set (cpu: `cpus` cores, where the node can).
        Raises CgroupError."""
        job = JobCgroup(self.version, job_dirs(self.dirs, job_id, attempt), max_pids)
        self._clear(job.dirs)
        for folder in job.dirs.values():
            _mkdir(folder)
        self._limit(job, memory_mb, cpus)
        return job

    def make_spare(self) -> JobCgroup:
        """A cgroup for a job not yet known (`next-N`, no limits): a warm sandbox's stub waits in it.
        Raises CgroupError."""
        name = f"next-{next(self._spares)}"
        spare = JobCgroup(self.version, {h: d / name for h, d in self.dirs.items()}, 0)
        try:
            for folder in spare.dirs.values():
                _mkdir(folder)
        except CgroupError:
            spare.remove()
            raise
        return spare

    def adopt(
        self, spare: JobCgroup, job_id: int, attempt: int, memory_mb: int | None, max_pids: int, cpus: int | None = None
    ) -> JobCgroup:
        """`spare` (a stub already in it) made one job attempt's cgroup: renamed to `job-ID-ATTEMPT` where
        the kernel can (v1), its limits set, its peak reset.  The same object, changed; raises CgroupError
        (and removes it, the stub with it)."""
        wanted = job_dirs(self.dirs, job_id, attempt)
        self._clear(wanted)
        for hierarchy, folder in spare.dirs.items():
            try:
                folder.rename(wanted[hierarchy])
                spare.dirs[hierarchy] = wanted[hierarchy]
            except OSError:
                pass  # v2 renames no cgroup: it keeps its next-N name
        spare.max_pids = max_pids
        self._limit(spare, memory_mb, cpus)
        if self.version == 1:  # its peak so far is the stub's; v1 resets it to what is held now
            try:
                _write(spare.dirs["memory"] / "memory.max_usage_in_bytes", "0")
            except CgroupError:
                pass
        return spare

    def _clear(self, dirs: dict[str, Path]) -> None:
        for folder in dirs.values():
            if folder.exists():  # left by an earlier try of this very attempt
                JobCgroup(self.version, {"x": folder}, 0).remove()

    def _limit(self, job: JobCgroup, memory_mb: int | None, cpus: int | None) -> None:
        try:
            for hierarchy, name, value, required in limit_files(
                self.version, memory_mb, job.max_pids, cpus if self.cpu else None
            ):
                path = job.dirs[hierarchy] / name
                if required or path.exists():
                    _write(path, value)
        except CgroupError:
            job.remove()
            raise


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value} to {path}: {exc.strerror}") from None


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot make {path}: {exc.strerror}") from None


def _rmdir(path: Path) -> None:
    # A process that has just been killed may hold its cgroup a moment longer.
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                break
            time.sleep(0.02)
    log.warning("cgroup %s could not be removed; remove it by hand once its processes are gone", path)


def _setup(node: str) -> NodeCgroups:
    """Make this worker's cgroup folders and check jobs can be limited in them.  Raises CgroupError."""
    version = 2 if (ROOT / "cgroup.controllers").exists() else 1
    own = own_dirs(version, parse_proc_cgroup(Path("/proc/self/cgroup").read_text()), ROOT)
    dirs = node_dirs(own, node, os.getpid())
    if version == 1:
        for hierarchy, folder in dirs.items():
            if hierarchy in V1_CONTROLLERS and not (folder.parent / "cgroup.procs").exists():
                raise CgroupError(f"the cgroup v1 {hierarchy} controller is not mounted at {ROOT / hierarchy}")
        cpu = _usable_v1_cpu(dirs)
        _sweep(dirs)
        for folder in dirs.values():
            _mkdir(folder)
        probe = oom_kills(1, (dirs["memory"] / "memory.oom_control").read_text())
        if probe is None:
            raise CgroupError("this kernel's memory.oom_control has no oom_kill count (Linux 4.13 or later has)")
        return NodeCgroups(1, dirs, cpu)
    _sweep(dirs)
    cpu = _setup_v2(own["unified"], dirs["unified"])
    return NodeCgroups(2, dirs, cpu)


def _usable_v1_cpu(dirs: dict[str, Path]) -> bool:
    """Whether v1's optional cpu controller can hold jobs here; where not, it is left out of `dirs`."""
    folder = dirs.get("cpu")
    if folder is None:
        return False
    parent = folder.parent
    if (parent / "cgroup.procs").exists() and (parent / "cpu.cfs_quota_us").exists() and os.access(parent, os.W_OK):
        return True
    log.warning("the cgroup v1 cpu controller is not usable at %s; jobs are pinned to their cores alone", parent)
    del dirs["cpu"]
    return False


def _setup_v2(own: Path, mine: Path) -> bool:
    """Pass memory and pids (and cpu, where offered) down to the worker's folder; True when cpu is too."""
    # v2 lets a cgroup pass controllers to its children only while it holds
    # no process itself: where the node's cgroup holds the worker alone (a
    # systemd unit with Delegate=yes), the worker moves into a leaf of its own.
    wanted = {"memory", "pids"}
    have = set((own / "cgroup.controllers").read_text().split())
    if not wanted <= have:
        raise CgroupError(f"{own} offers no {' or '.join(sorted(wanted - have))} controller (delegate it)")
    if "cpu" in have:
        wanted.add("cpu")
    else:
        log.warning("%s offers no cpu controller (delegate it); jobs are pinned to their cores alone", own)
    _mkdir(mine)
    enable = " ".join(f"+{c}" for c in sorted(wanted))
    try:
        _write(own / "cgroup.subtree_control", enable)
    except CgroupError:
        others = set((own / "cgroup.procs").read_text().split()) - {str(os.getpid())}
        if others:
            raise CgroupError(
                f"{own} holds other processes ({len(others)}), so it cannot pass memory and pids on; "
                "run the node worker alone in a cgroup delegated to it (systemd: Delegate=yes)"
            ) from None
        _mkdir(mine / "worker")
        _write(mine / "worker" / "cgroup.procs", "0")
        _write(own / "cgroup.subtree_control", enable)
    _write(mine / "cgroup.subtree_control", enable)
    return "cpu" in wanted


def _sweep(dirs: dict[str, Path]) -> None:
    """Remove what dead node workers left beside ours (a worker killed with jobs running).

    A worker counts as dead when no process has its pid: a reused pid only
    leaves its folders for a later sweep.
    """
    pattern = re.compile(r"dctoolkit-.+-(\d+)$")
    for folder in dirs.values():
        for old in folder.parent.glob("dctoolkit-*-*"):
            match = pattern.match(old.name)
            if not match or int(match[1]) == os.getpid() or _alive(int(match[1])):
                continue
            for job in [*old.glob("job-*"), *old.glob("next-*"), *old.glob("worker")]:
                JobCgroup(1, {"x": job}, 0).remove()
            _rmdir(old)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_node: dict[str, NodeCgroups | None] = {}
_node_lock = threading.Lock()


def for_node(node: str, mode: str = "auto") -> NodeCgroups | None:
    """This worker's cgroups, set up on first use; None (said once in the log) where there are none."""
    with _node_lock:
        if node not in _node:
            _node[node] = _first_setup(node, mode)
        return _node[node]


def _first_setup(node: str, mode: str) -> NodeCgroups | None:
    if mode == "off":
        log.warning("node %s: DCT_CGROUPS=off: memory is watched, processes are not limited", node)
        return None
    try:
        made = _setup(node)
    except (CgroupError, OSError) as exc:
        log.warning(
            "node %s: jobs cannot be limited through cgroups here (%s); the node watches their memory instead "
            "(a process that leaves the job's process tree escapes that watch) and does not limit their "
            "processes. To fix: run the node as root with cgroup v1's memory and pids controllers mounted "
            "writable under %s, or on cgroup v2 in a cgroup delegated to it",
            node,
            exc,
            ROOT,
        )
        return None
    where = " and ".join(str(d) for d in made.dirs.values())
    what = "cpu, memory and processes" if made.cpu else "memory and processes"
    log.info("node %s: jobs are limited by cgroup v%d (%s) under %s", node, made.version, what, where)
    if not favors_dynmods(_read("/proc/mounts")):
        log.info(
            "node %s: no cgroup hierarchy is mounted with favordynmods, so moving a process into a cgroup "
            "waits for an RCU grace period (5-15 ms) after a quiet spell; warm sandboxes do it ahead of their "
            "next job, fresh sandboxes and unfenced jobs as they start (README, Performance)",
            node,
        )
    return made


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def for_job(node: str, job_id: int, attempt: int, memory_mb: int | None, max_pids: int, mode: str = "auto",
            cpus: int | None = None, spare: JobCgroup | None = None) -> JobCgroup | None:  # fmt: skip
    """A cgroup for one job attempt, or None where the node has none (the memory watch stands in).
    `cpus`: its request_cpus, its cpu limit where the node has the cpu controller.
    `spare`: a warm sandbox's spare cgroup with its stub in it (`NodeCgroups.make_spare`), made this
    attempt's; where that fails, it is removed (the stub with it) and a new one is made."""
    made = for_node(node, mode)
    if made is None:
        if spare:
            spare.remove()
        return None
    if spare:
        try:
            return made.adopt(spare, job_id, attempt, memory_mb, max_pids, cpus)
        except CgroupError as exc:
            log.warning("job %s: its warm sandbox's ready cgroup could not be used (%s); making another", job_id, exc)
    try:
        return made.make_job(job_id, attempt, memory_mb, max_pids, cpus)
    except CgroupError as exc:
        log.warning("job %s: no cgroup (%s); its memory is watched instead", job_id, exc)
        return None


def enforcement(node: str) -> dict[str, str | None]:
    """How this worker limits its jobs (the node object's `enforcement`): cpus by a cgroup or by
    affinity alone, memory by a cgroup or the node's watch, processes by a cgroup or not at all."""
    with _node_lock:
        made = _node.get(node)
    return enforcement_of(made)


def enforcement_of(made: NodeCgroups | None) -> dict[str, str | None]:
    """`enforcement` for a node with these cgroups (None: none)."""
    return {
        "cpus": "cgroup" if made and made.cpu else "affinity",
        "memory": "cgroup" if made else "watch",
        "pids": "cgroup" if made else None,
    }


def close() -> None:
    """Remove this worker's cgroup folders where no job is left in them (the worker is stopping).

    Running jobs are left alone: they end as the shutdown says; what a killed
    worker leaves, the next worker of the node sweeps away.
    """
    with _node_lock:
        made = [m for m in _node.values() if m is not None]
    for node in made:
        for folder in node.dirs.values():
            try:
                folder.rmdir()
            except OSError:
                pass


def enter(procs_fds: list[int]) -> None:
    """Move the calling process into a cgroup through its open `cgroup.procs` files (between fork and exec)."""
    for fd in procs_fds:
        os.write(fd, b"0")


# The shell that puts itself in the job's cgroup(s), then becomes the job.
_JOIN = 'for p do [ "$p" = -- ] && break; echo 0 > "$p" || exit 125; shift; done; shift; exec "$@"'


def joining(argv: list[str], cgroup: JobCgroup) -> list[str]:
    """`argv` run by a shell that first enters `cgroup`, so the job starts inside it.

    Used where the node starts bubblewrap itself (a fresh sandbox): it keeps
    subprocess's vfork, which a preexec_fn would turn into a fork of the
    whole worker (milliseconds per job).  It runs with bubblewrap's own fixed
    environment (sandbox.HELPER_ENV), never the job's.
    """
    return ["/bin/sh", "-c", _JOIN, "dct-join-cgroup", *cgroup.procs_paths(), "--", *argv]
