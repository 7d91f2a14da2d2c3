"""The fence around a job: a bubblewrap command line, and a probe for whether it works here.

What a job sees (README, "What a job can see"):
- the system (`/usr`, `/etc`, ...) read-only, and the Python that runs `.py` jobs read-only;
- its own folder, read-write, and a private `/tmp`;
- the paths staff add with DCT_SANDBOX_PATHS, read-only or `:rw`;
- its own PID, IPC and UTS namespaces; with `network = none` its own empty network;
- no capabilities, even when the node runs as root.
Shared storage, the project folder, the database, `.env`, and other jobs are not there at all.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# System folders bound read-only when they exist; on merged-/usr systems /bin,
# /lib and friends are symlinks and are recreated as such.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
CONTAINER_WORKDIR = "/tmp/job"


class SandboxConfigError(ValueError):
    """DCT_SANDBOX_PATHS names something that cannot be bound."""


@dataclass(frozen=True)
class ExtraPath:
    path: str
    writable: bool = False


@dataclass(frozen=True)
class Fence:
    """How to fence one job."""

    workdir: str
    network: bool = True
    container: str = ""
    extra_paths: tuple[ExtraPath, ...] = ()
    gpu_devices: bool = False


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


@functools.cache
def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def probe() -> tuple[bool, str]:
    """(True, "") when bubblewrap can fence a job on this machine, else (False, why not)."""
    bwrap = bwrap_path()
    if not bwrap:
        return False, "bubblewrap (bwrap) is not installed; install Debian's 'bubblewrap' package"
    argv = [bwrap, *_base_args(Fence(workdir="/tmp")), "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap failed to start: {exc}"
    if done.returncode != 0:
        return False, f"bubblewrap cannot make namespaces here: {done.stderr.strip()[:300]}"
    return True, ""


def python_paths() -> list[tuple[str, str]]:
    """(host folder, path inside) for the worker's Python, so `.py` jobs keep its packages.

    Each prefix appears both at its real path and at the path the worker
    knows it by (a virtualenv reached through a symbolic link keeps working).
    """
    seen = (sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(sys.executable)))
    pairs = set()
    for path in seen:
        real = os.path.realpath(path)
        for inside in {os.path.abspath(path), real}:
            if inside not in ("/", "/usr") and os.path.isdir(real):
                pairs.add((real, inside))
    real_exe = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    if real_exe not in ("/", "/usr"):
        pairs.add((real_exe, real_exe))
    return sorted(pairs, key=lambda pair: pair[1])


def _base_args(fence: Fence) -> list[str]:
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
    if not fence.network:
        args.append("--unshare-net")
    if fence.container:
        args += ["--ro-bind", fence.container, "/"]
    else:
        for path in SYSTEM_PATHS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if not fence.container:
        # After the private /tmp: the Python may itself live under /tmp.
        for real, inside in python_paths():
            args += ["--ro-bind", real, inside]
    if fence.gpu_devices:
        for dev in sorted(glob.glob("/dev/nvidia*")):
            args += ["--dev-bind", dev, dev]
    return args


def inside_workdir(fence: Fence) -> str:
    """Where the job's folder appears inside the sandbox."""
    return CONTAINER_WORKDIR if fence.container else fence.workdir


def fenced_command(argv: list[str], fence: Fence) -> list[str]:
    """`argv` wrapped in bubblewrap so that it runs fenced in (see the module docstring)."""
    bwrap = bwrap_path()
    if not bwrap:
        raise RuntimeError("bubblewrap is not installed")
    args = [bwrap, *_base_args(fence)]
    # Staff paths go after the private /tmp, so a path under /tmp is visible.
    for extra in fence.extra_paths:
        args += ["--bind-try" if extra.writable else "--ro-bind-try", extra.path, extra.path]
    inside = inside_workdir(fence)
    args += ["--bind", fence.workdir, inside, "--chdir", inside, "--setenv", "HOME", inside]
    return [*args, "--", *argv]


def container_problem(path: str) -> str | None:
    """None when `path` looks like a root filesystem, else what is wrong with it."""
    root = Path(path)
    if not root.is_dir():
        return f"{path} is not a folder"
    if not (root / "bin").exists() and not (root / "usr" / "bin").exists():
        return f"{path} has no bin/ or usr/bin/: it does not look like a root filesystem"
    return None
