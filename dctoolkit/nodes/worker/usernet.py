"""`network = private`: a job's own network namespace, with outbound traffic through user-mode networking.

The sandbox gets its own network namespace (bubblewrap's `--unshare-net`) and
a user-mode network helper on the host carries its connections out: Debian's
`passt` package (`pasta`) or `slirp4netns` (see `helper_order` for which first).  The helper
opens each connection from the host as an ordinary socket, so a private job
reaches what any other machine on the network reaches, and nothing bound to
the node's loopback (Redis, PostgreSQL, Flower, the portal on 127.0.0.1):

- pasta forwards no port either way (`-t/-u/-T/-U none`: no path from the
  namespace's 127.0.0.1 to the host's) and does not map the gateway's address
  to the host (`--no-map-gw`);
- slirp4netns is told `--disable-host-loopback` (its gateway 10.0.2.2 would
  otherwise be the host's 127.0.0.1), and runs in its own sandbox with seccomp.

`netshim.py` starts bubblewrap and the helper together and ties the helper's
life to bubblewrap's (see there).  A node where neither helper works says so
in its log at start-up, and its private-network jobs fail with that reason;
they never run on the host's network instead.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The `network =` choices, and DCT_DEFAULT_NETWORK's.
NETWORKS = ("host", "none", "private")
HELPERS = ("pasta", "slirp4netns")
SHIM_SOURCE = Path(__file__).with_name("netshim.py").read_text() + "\nmain()\n"
# netshim.py puts the paths of the sandbox's network and user namespaces there.
NETNS, USERNS = "{netns}", "{userns}"


@dataclass(frozen=True)
class Helper:
    name: str  # one of HELPERS
    path: str


def helper_order(as_root: bool) -> tuple[str, ...]:
    """HELPERS in the order tried.

    A node running as root runs the helper as root too, on the host's network,
    parsing the job's packets.  There slirp4netns comes first: in its own
    sandbox it keeps one capability (binding low ports) under a seccomp filter,
    while pasta (Debian 12's, 2023-03) can only attach to a namespace as root
    if it stays root (`--runas 0`) and keeps CAP_SYS_ADMIN; it also holds about
    30 MB against slirp4netns's 4.  Not root, both run as the node's user, and
    pasta, built for speed, comes first (one TCP stream here: pasta 50-470 MB/s,
    erratic; slirp4netns 120-200 MB/s; the host's own network 1.1-1.7 GB/s).
    """
    return ("slirp4netns", "pasta") if as_root else HELPERS


def find_helper(which=shutil.which, as_root: bool | None = None) -> Helper | None:
    """The first helper of `helper_order` installed on this machine, or None."""
    for name in helper_order(os.geteuid() == 0 if as_root is None else as_root):
        path = which(name)
        if path:
            return Helper(name, path)
    return None


def helper_command(helper: Helper, as_root: bool) -> list[str]:
    """The helper's command, attached to the network namespace NETNS (in the user namespace USERNS)."""
    if helper.name == "pasta":
        # As root, pasta would drop to `nobody` before opening the namespace, and fail;
        # it keeps only the capabilities it needs and a seccomp filter (`--runas 0`).
        # Not root: the namespace belongs to the sandbox's user namespace, which it joins.
        who = ["--runas", "0"] if as_root else ["--userns", USERNS]
        return [
            helper.path, "-f", "-q", "--config-net",
            "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw",
            "--no-dhcp", "--no-dhcpv6", "--no-ra",
            *who, "--netns", NETNS,
        ]  # fmt: skip
    if helper.name == "slirp4netns":
        userns = [] if as_root else [f"--userns-path={USERNS}"]
        return [
            helper.path, "--configure", "--mtu=65520", "--disable-host-loopback",
            "--enable-sandbox", "--enable-seccomp", *userns, "--netns-type=path", NETNS, "tap0",
        ]  # fmt: skip
    raise ValueError(f"unknown user-mode network helper {helper.name!r}; known: {', '.join(HELPERS)}")


def wrap(bwrap_command: list[str], python: str, helper: Helper | None = None) -> list[str]:
    """`bwrap_command` (which must unshare the network) started with the helper on its namespace."""
    helper = helper or find_helper()
    if helper is None:
        raise RuntimeError(unavailable_reason())
    template = helper_command(helper, as_root=os.geteuid() == 0)
    return [python, "-I", "-S", "-c", SHIM_SOURCE, json.dumps(template), *bwrap_command]


def unavailable_reason() -> str:
    return "neither pasta nor slirp4netns is installed; install Debian's 'passt' (or 'slirp4netns') package"


@functools.cache
def probe() -> tuple[bool, str]:
    """(True, helper's name) when a private network works here, else (False, why not).

    Runs a real sandbox with a private network, as a job would get, and looks for its default route.
    """
    from dctoolkit.nodes.worker import sandbox

    ok, why = sandbox.probe()
    if not ok:
        return False, f"the sandbox is off ({why})"
    helper = find_helper()
    if helper is None:
        return False, unavailable_reason()
    fence = sandbox.Fence(workdir="/tmp", network="private")
    try:
        done = sandbox.run_fenced(["cat", "/proc/net/route"], fence, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{helper.name} ({helper.path}) failed to start: {exc}"
    routes = [line.split() for line in done.stdout.splitlines()[1:]]
    if done.returncode != 0 or not any(r[1:2] == ["00000000"] for r in routes):
        detail = done.stderr.strip()[:300] or f"exit status {done.returncode}"
        return False, f"{helper.name} ({helper.path}) could not give a sandbox its network: {detail}"
    return True, helper.name
