"""The fence around a job: a bubblewrap command line, and a probe for whether it works here.

What a job sees (README, "What a job can see"):
- the system (`/usr`, `/etc`, ...) read-only, and the Python that runs `.py` jobs read-only;
- its own folder, read-write, and a private `/tmp`;
- the paths staff add with DCT_SANDBOX_PATHS, read-only or `:rw`;
- the folders staff granted the job's owner (`./dct grant`), read-only or read-write, each bound from
  the folder the node opened without following a link (`open_granted`), so that a user who controls a
  granted folder's parent cannot swap in a link to somewhere else between the node's check and the mount;
- its own PID, IPC and UTS namespaces; with `network = none` its own empty network, with
  `network = private` its own network with outbound traffic only (usernet.py);
- no capabilities, even when the node runs as root, and a system-call filter (`seccomp.py`)
  that refuses what would reach other processes, the kernel or new namespaces;
- for a GPU job, only its own /dev/nvidiaN and the driver's control devices;
- nothing of pid 1, bubblewrap's own init: /proc/1 is covered, as bubblewrap makes its init
  dumpable again and a job could otherwise write into its memory.
Nothing of the job reaches bubblewrap's command line or environment: bubblewrap starts with a
fixed one (HELPER_ENV), and the job's variables and every other per-job argument reach it
through a file descriptor (`--args`), set only for the program it starts (`--clearenv`,
`--setenv`).
Shared storage, the project folder, the database, `.env`, and other jobs are not there at all:
they are never bound, and where one lies under a bound folder (`/opt/dctoolkit`, a
DCT_SANDBOX_PATHS entry) an empty tmpfs covers it.  Whatever in `/etc` not every user of the
machine may read (`/etc/shadow`, a Redis or PostgreSQL config) is covered too, since a node
running as root would otherwise read it as the file's owner.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dctoolkit.nodes.worker import seccomp, usernet

# System folders bound read-only when they exist; on merged-/usr systems /bin,
# /lib and friends are symlinks and are recreated as such.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
CONTAINER_WORKDIR = "/tmp/job"
# Folders whose entries that not everyone may read are covered inside the sandbox.
PRIVATE_SCAN_PATHS = ("/etc",)
# How long a scan of PRIVATE_SCAN_PATHS is reused: a scan takes ~30 ms, too
# much for every job, and a new secret in /etc is covered within this delay.
PRIVATE_SCAN_SECONDS = 60.0
# The whole environment of every program the node starts around a job
# (bubblewrap, and through it the warm sandboxes' zygote): nothing of the
# job's or of the node's own.
HELPER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}
# bubblewrap reads at most this many arguments through --args (MAX_ARGS in bubblewrap.c).
BWRAP_MAX_ARGS = 9000
# The devices every GPU job gets besides its own /dev/nvidiaN: the driver's
# control and unified-memory devices, and (below /dev/nvidia-caps) the MIG
# capabilities.  Any other /dev/nvidia* (another GPU, an NVSwitch) is left out.
GPU_CONTROL_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
GPU_CAPS_FOLDER = "/dev/nvidia-caps"


class SandboxConfigError(ValueError):
    """DCT_SANDBOX_PATHS names something that cannot be bound."""


class LaunchError(ValueError):
    """A job cannot be handed to bubblewrap as it is; the message is for its owner."""


@dataclass(frozen=True)
class ExtraPath:
    path: str
    writable: bool = False


@dataclass(frozen=True)
class Fence:
    """How to fence one job."""

    workdir: str
    network: str = "host"  # one of usernet.NETWORKS
    container: str = ""
    extra_paths: tuple[ExtraPath, ...] = ()
    # The GPUs the job was given (their /dev/nvidiaN); none: no GPU device at all.
    gpu_indices: tuple[int, ...] = ()
    # Host folders the job must never see (project, var/, storage, scratch,
    # the database's folder), covered wherever a bound folder would show them.
    hidden: tuple[str, ...] = ()
    # The folders granted to the job's owner (canonical paths): part of the fence, so that a warm
    # sandbox only ever serves jobs with exactly these grants (and one owner: warm.py's key).
    granted: tuple[ExtraPath, ...] = ()


def parse_sandbox_paths(text: str) -> tuple[ExtraPath, ...]:
    """`/data,/scratch:rw` -> ExtraPaths.  Raises SandboxConfigError naming the bad entry."""
    paths = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        path, _, mode = entry.partition(":")
        if mode not in ("", "ro", "rw") or not path.startswith("/"):
            raise SandboxConfigError(
                f"DCT_SANDBOX_PATHS entry '{entry}': write an absolute PATH (read-only) or PATH:rw (writable)"
            )
        paths.append(ExtraPath(os.path.normpath(path), writable=mode == "rw"))
    return tuple(paths)


def _configured_bwrap() -> str:
    from django.conf import settings

    return getattr(settings, "DCT_BWRAP", "") if settings.configured else ""


@functools.cache
def bwrap_path() -> str | None:
    """The bubblewrap binary: DCT_BWRAP when set (and executable), else `bwrap` on PATH."""
    configured = _configured_bwrap()
    if configured:
        return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
    return shutil.which("bwrap")


@functools.cache
def probe() -> tuple[bool, str]:
    """(True, "") when bubblewrap can fence a job on this machine, else (False, why not).

    It starts `true` exactly as a job is started (arguments through --args,
    the system-call filter, a job folder), so a bubblewrap too old for one of
    them, or a kernel without seccomp, says so here rather than at a job.
    """
    bwrap = bwrap_path()
    if not bwrap:
        configured = _configured_bwrap()
        if configured:
            return False, f"DCT_BWRAP={configured} is not an executable file; point it at bubblewrap's bwrap"
        return False, "bubblewrap (bwrap) is not installed; install Debian's 'bubblewrap' package"
    try:
        with tempfile.TemporaryDirectory() as workdir:
            done = run_fenced(["true"], Fence(workdir=workdir), timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap failed to start: {exc}"
    if done.returncode != 0:
        return False, (
            f"bubblewrap cannot fence a job here: {done.stderr.strip()[:300]} "
            "(it needs bubblewrap 0.5 or later and a kernel with user namespaces and seccomp)"
        )
    return True, ""


def python_paths() -> list[str]:
    """The folders the worker's Python lives in, so `.py` jobs keep its packages."""
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    return sorted(p for p in paths if p not in ("/", "/usr") and os.path.isdir(p))


def private_entries() -> tuple[str, ...]:
    """Files and folders under PRIVATE_SCAN_PATHS that not every user may read (cached briefly).

    A folder counts as private when others may not both list and enter it.
    """
    now = time.monotonic()
    if _private_cache and now - _private_cache[0] < PRIVATE_SCAN_SECONDS:
        return _private_cache[1]
    found: list[str] = []
    for top in PRIVATE_SCAN_PATHS:
        for root, dirs, files in os.walk(top):
            private_dirs = {d for d in dirs if _private(os.path.join(root, d), stat.S_IROTH | stat.S_IXOTH)}
            found += [os.path.join(root, d) for d in sorted(private_dirs)]
            found += [os.path.join(root, f) for f in files if _private(os.path.join(root, f), stat.S_IROTH)]
            dirs[:] = [d for d in dirs if d not in private_dirs]  # covered whole: no need to look inside
    _private_cache[:] = [now, tuple(found)]
    return _private_cache[1]


def _private(path: str, wanted: int) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISLNK(mode) and mode & wanted != wanted


_private_cache: list = []


def python_executable() -> str:
    """The worker's Python, by a path that exists inside the sandbox.

    The folder is resolved (a project's `.venv` may be a symbolic link to a
    folder elsewhere, and only that folder is bound), but not the file: a
    virtualenv's python must be started by its own path to find its packages.
    """
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def _system_binds(fence: Fence) -> list[tuple[str, str]]:
    """(host path, path inside) of every folder bound read-only from the host."""
    if fence.container:
        return []
    binds = [(p, p) for p in SYSTEM_PATHS if os.path.isdir(p) and not os.path.islink(p)]
    return binds + [(p, p) for p in python_paths()]


def _base_args(fence: Fence, private: tuple[str, ...] | None = None) -> list[str]:
    args = [
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--cap-drop",
        "ALL",
    ]
    if fence.network != "host":
        args.append("--unshare-net")
    if fence.container:
        args += ["--ro-bind", fence.container, "/"]
    else:
        for path in SYSTEM_PATHS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for path in private_entries() if private is None else private:
            args += ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]
    # bubblewrap's init (pid 1) is dumpable and of the job's uid: without the
    # cover a job could write into /proc/1/mem and, say, outlive its sandbox.
    args += ["--proc", "/proc", "--tmpfs", "/proc/1", "--remount-ro", "/proc/1"]
    args += ["--dev", "/dev", "--tmpfs", "/tmp"]
    # After the private /tmp, so that a Python environment under /tmp stays.
    for path in python_paths() if not fence.container else ():
        args += ["--ro-bind", path, path]
    for dev in gpu_devices(_nvidia_entries(), fence.gpu_indices):
        args += ["--dev-bind", dev, dev]
    return args


def gpu_devices(entries: Iterable[str], indices: Iterable[int]) -> list[str]:
    """The device paths, out of `entries` (the /dev/nvidia* and /dev/nvidia-caps/* there are), a job on GPUs
    `indices` gets: its own /dev/nvidiaN and the control devices; nothing without a GPU."""
    own = {f"/dev/nvidia{i}" for i in indices}
    if not own:
        return []
    control = set(GPU_CONTROL_DEVICES)
    return sorted(
        path for path in set(entries) if path in own or path in control or os.path.dirname(path) == GPU_CAPS_FOLDER
    )


def _nvidia_entries() -> list[str]:
    return glob.glob("/dev/nvidia*") + glob.glob(f"{GPU_CAPS_FOLDER}/*")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def covers(fence: Fence) -> list[str]:
    """Where, inside the sandbox, a hidden folder would show through a bound one: each gets an empty tmpfs."""
    shown = _extra_paths_shown(fence) + _shown(fence, fence.granted)
    binds = _system_binds(fence) + [(os.path.realpath(e.path), e.path) for e in shown]
    spots = set()
    for hidden in (os.path.realpath(h) for h in fence.hidden):
        for source, inside in binds:
            if _under(hidden, source) and os.path.isdir(hidden):
                spots.add(os.path.normpath(inside + "/" + os.path.relpath(hidden, source)))
    return sorted(spots)


def _extra_paths_shown(fence: Fence) -> list[ExtraPath]:
    return _shown(fence, fence.extra_paths)


def _shown(fence: Fence, paths: Iterable[ExtraPath]) -> list[ExtraPath]:
    # A container's root is read-only, so bubblewrap can make no mount point
    # in it: there a staff path or granted folder shows only where the
    # container has a folder for it, or under the private /tmp.
    if not fence.container:
        return list(paths)
    root = Path(fence.container)
    return [e for e in paths if _under(e.path, "/tmp") or (root / e.path.lstrip("/")).is_dir()]


def open_granted(path: str) -> int:
    """An O_PATH descriptor of the folder `path` (absolute, canonical), reached one name at a time without
    following a symbolic link; OSError when a part is a link, missing or not a folder.

    bubblewrap binds the folder the descriptor holds (`--bind-fd`) and checks, once mounted, that it is
    that folder: what a user does to the path meanwhile changes nothing.
    """
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", flags)
    try:
        for name in (part for part in path.split("/") if part):
            if name in (".", ".."):
                raise OSError(f"{path}: '{name}' in a granted folder's path")
            inner = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def granted_problem(path: str) -> str:
    """Why a granted folder cannot be bound here now ("" when it can): gone, or a link on its way."""
    try:
        os.close(open_granted(path))
    except OSError as exc:
        why = "a part of its path is now a symbolic link" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else None
        return f"{path} cannot be bound on this node ({why or exc.strerror or exc})"
    return ""


def inside_workdir(fence: Fence) -> str:
    """Where the job's folder appears inside the sandbox."""
    return CONTAINER_WORKDIR if fence.container else fence.workdir


@dataclass(frozen=True)
class Launch:
    """How to start one fenced program: run `argv` with HELPER_ENV as its environment, passing `fds`."""

    argv: list[str]
    fds: tuple[int, ...]


@contextlib.contextmanager
def launch(argv: list[str], fence: Fence, env: Mapping[str, str], cwd: str = "") -> Iterator[Launch]:
    """`argv` fenced in (see the module docstring), with exactly `env` as its environment, started in
    `cwd` (a path inside the sandbox; "": the job's folder).

    bubblewrap's command line holds only `--args FD -- argv`: the fence, the
    job's folder and its variables are read from FD, and the system-call
    filter from another; the granted folders are bound from descriptors the
    node opened (open_granted); all are closed on leaving.  Raises LaunchError
    when bubblewrap could not take the arguments (a NUL byte, too many
    variables) or a granted folder could not be opened.
    """
    bwrap = bwrap_path()
    if not bwrap:
        raise RuntimeError("bubblewrap is not installed")
    with contextlib.ExitStack() as stack:
        granted_fds = []
        for folder in _shown(fence, fence.granted):
            try:
                granted_fds.append(open_granted(folder.path))
            except OSError as exc:
                raise LaunchError(f"the granted folder {folder.path} could not be opened: {exc}") from None
            stack.callback(os.close, granted_fds[-1])
        filter_fd = _memory_file("dct-seccomp", seccomp.program())
        stack.callback(os.close, filter_fd)
        args = [*job_arguments(fence, env, granted_fds, cwd), "--seccomp", str(filter_fd)]
        if len(args) > BWRAP_MAX_ARGS:
            most = (BWRAP_MAX_ARGS - (len(args) - 3 * len(env))) // 3
            raise LaunchError(f"{len(env):,} environment variables are more than bubblewrap takes here ({most:,})")
        args_fd = _memory_file("dct-bwrap-args", nul_separated(args))
        stack.callback(os.close, args_fd)
        command = [bwrap, "--args", str(args_fd), "--", *argv]
        if fence.network == "private":
            command = usernet.wrap(command, python_executable())  # the shim becomes bwrap; the fds pass through
        yield Launch(command, (args_fd, filter_fd, *granted_fds))


def run_fenced(argv: list[str], fence: Fence, timeout: float) -> subprocess.CompletedProcess:
    """Run `argv` fenced in, with HELPER_ENV as its environment, to its end (probes and tests)."""
    with launch(argv, fence, HELPER_ENV) as cmd:
        return subprocess.run(
            cmd.argv, env=HELPER_ENV, pass_fds=cmd.fds, capture_output=True, text=True, timeout=timeout, check=False
        )


def job_arguments(fence: Fence, env: Mapping[str, str], granted_fds: Iterable[int] = (), cwd: str = "") -> list[str]:
    """bubblewrap's options for one program: the fence, its folder, and `env` as its whole environment.

    `granted_fds`: a descriptor of each granted folder bubblewrap may show (see launch), in order."""
    inside = inside_workdir(fence)
    private = private_entries()
    binds, covered = _fence_prefix(replace(fence, workdir=""), private, _private_cache[0])
    grants = [
        part
        for folder, fd in zip(_shown(fence, fence.granted), granted_fds, strict=True)
        for part in ("--bind-fd" if folder.writable else "--ro-bind-fd", str(fd), folder.path)
    ]
    variables = [part for name, value in env.items() for part in ("--setenv", name, value)]
    return [
        *binds,
        *grants,
        *covered,
        "--bind",
        fence.workdir,
        inside,
        "--chdir",
        cwd or inside,
        "--clearenv",
        *variables,
    ]


def nul_separated(args: list[str]) -> bytes:
    """Arguments as --args reads them; LaunchError when one holds a NUL, which would split it in two."""
    if any("\0" in a for a in args):
        raise LaunchError("an argument or environment variable holds a NUL byte, which no program can be given")
    return b"".join(a.encode() + b"\0" for a in args)


def _memory_file(name: str, data: bytes) -> int:
    """A file descriptor to read `data` from (a memfd: no pipe fills up, nothing on disk)."""
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # a kernel without memfd: an unlinked temporary file
        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@functools.lru_cache(maxsize=64)
def _fence_prefix(fence: Fence, private: tuple[str, ...], scanned_at: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Everything but the job's own folder and the granted folders (bound from
    # descriptors, new for each sandbox), as (before them, after them): the
    # same for every job with the same fence, and worked out again with each
    # scan of the private files (`scanned_at`, every PRIVATE_SCAN_SECONDS),
    # which also sees folders that appeared or went since.
    args = _base_args(fence, private)
    # Staff paths go after the private /tmp, so a path under /tmp is visible.
    for extra in _extra_paths_shown(fence):
        args += ["--bind-try" if extra.writable else "--ro-bind-try", extra.path, extra.path]
    # Covers go after every bind that could show a hidden folder (the granted
    # folders' too); the Python environment (often the project's own .venv)
    # and the job's folder (under the hidden scratch folder) are bound again
    # on top of them.
    after: list[str] = []
    spots = covers(fence)
    for spot in spots:
        after += ["--tmpfs", spot]
    for path in python_paths() if not fence.container else ():
        if any(_under(path, spot) for spot in spots):
            after += ["--ro-bind", path, path]
    return tuple(args), tuple(after)


def container_problem(path: str) -> str | None:
    """None when `path` looks like a root filesystem, else what is wrong with it."""
    root = Path(path)
    if not root.is_dir():
        return f"{path} is not a folder"
    if not (root / "bin").exists() and not (root / "usr" / "bin").exists():
        return f"{path} has no bin/ or usr/bin/: it does not look like a root filesystem"
    # The root is bound read-only, so bubblewrap needs these mount points there.
    missing = [name for name in ("proc", "dev", "tmp") if not (root / name).is_dir()]
    if missing:
        return f"{path} has no {', '.join(m + '/' for m in missing)} folder (make them: mkdir {path}/{{proc,dev,tmp}})"
    return None
