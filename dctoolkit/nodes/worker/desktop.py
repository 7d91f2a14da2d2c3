"""Desktop nodes: a workstation that lends its idle time (`DCT_NODE_POLICY=desktop`), as HTCondor's desktop policy.

The node takes jobs only once its owner has been idle `DCT_IDLE_MINUTES`.
When the owner comes back, the heartbeat loop (agent.py) marks them present
and every job of the node is stopped (SIGSTOP of its whole tree: runner.py's
watch loop, within half a second of the mark); when the owner leaves again
the jobs are resumed (SIGCONT).  A job suspended longer than
`DCT_SUSPEND_MAX` is vacated: SIGTERM, a grace, SIGKILL, and back to the
queue without using up an attempt.  The owner's "I need it now" in the portal
(`reclaimed_at` on the node row) vacates at once.

Where the owner's idle time comes from: `DCT_IDLE_SOURCE` when set (a file
holding the idle seconds, or a command printing them: the operator's choice
wins), else logind's IdleHint/IdleSinceHint over the machine's user sessions.
An idle time that cannot be read counts as "the owner is here": a node
never lends on a guess.

The top half is pure (settings, parsing, decisions); the bottom half is the
node's state, read by the job watchers and written by the heartbeat loop.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from dctoolkit.lib.units import UnitError, parse_duration

log = logging.getLogger(__name__)

DESKTOP = "desktop"
# DCT_NODE_POLICY's words: '' (or always) takes jobs whenever it has room; desktop lends idle time only.
POLICIES = {"": "", "always": "", DESKTOP: DESKTOP}
DEFAULT_IDLE_MINUTES = 15.0
DEFAULT_SUSPEND_MAX = "10m"
USER_NAME = re.compile(r"^[\w.@+-]{1,150}$")
# A command that prints the idle seconds gets this long.
COMMAND_TIMEOUT_SECONDS = 5.0


class IdleSourceError(ValueError):
    """The owner's idle time could not be read; the message says from where and why."""


@dataclass(frozen=True)
class DesktopConfig:
    """The desktop settings of one node, as settings.py reads them (problems for checks.py)."""

    policy: str = ""
    idle_minutes: float = DEFAULT_IDLE_MINUTES
    idle_source: str = ""
    suspend_max_seconds: float = 600.0
    owner: str = ""
    problems: tuple[str, ...] = ()

    @property
    def is_desktop(self) -> bool:
        return self.policy == DESKTOP


def desktop_config(env: Mapping[str, str]) -> DesktopConfig:
    """DCT_NODE_POLICY, DCT_IDLE_MINUTES, DCT_IDLE_SOURCE, DCT_SUSPEND_MAX and DCT_NODE_OWNER from `env`.

    Every bad value is named in `problems` (all at once), and the default is used in its place.
    """
    problems = []
    raw_policy = env.get("DCT_NODE_POLICY", "").strip()
    policy = POLICIES.get(raw_policy.lower())
    if policy is None:
        problems.append(f"DCT_NODE_POLICY={raw_policy!r}: use desktop (lend idle time only) or leave it unset")
        policy = ""
    idle_minutes = DEFAULT_IDLE_MINUTES
    raw_minutes = env.get("DCT_IDLE_MINUTES", "").strip()
    if raw_minutes:
        try:
            idle_minutes = float(raw_minutes)
            if not 0 <= idle_minutes < 10_000:  # NaN fails it too
                raise ValueError
        except ValueError:
            problems.append(f"DCT_IDLE_MINUTES={raw_minutes!r}: use a number of minutes from 0, such as 15 or 0.5")
            idle_minutes = DEFAULT_IDLE_MINUTES
    raw_max = env.get("DCT_SUSPEND_MAX", "").strip() or DEFAULT_SUSPEND_MAX
    try:
        suspend_max = parse_duration(raw_max)
    except UnitError as exc:
        problems.append(f"DCT_SUSPEND_MAX={raw_max!r}: {exc}")
        suspend_max = parse_duration(DEFAULT_SUSPEND_MAX)
    owner = env.get("DCT_NODE_OWNER", "").strip()
    if owner and not USER_NAME.match(owner):
        problems.append(f"DCT_NODE_OWNER={owner[:40]!r}: use the owner's user name in the portal, such as alice")
        owner = ""
    source = env.get("DCT_IDLE_SOURCE", "").strip()
    if source:
        try:
            shlex.split(source)
        except ValueError as exc:
            problems.append(f"DCT_IDLE_SOURCE={source!r}: {exc}; use a file's path or a command line")
    if policy != DESKTOP and raw_policy.lower() in POLICIES:  # (a bad policy is named above)
        unused = [n for n in ("DCT_IDLE_MINUTES", "DCT_IDLE_SOURCE", "DCT_SUSPEND_MAX") if env.get(n, "").strip()]
        if unused:
            problems.append(f"{', '.join(unused)} set, but DCT_NODE_POLICY is not desktop: set DCT_NODE_POLICY=desktop")
    return DesktopConfig(policy, idle_minutes, source, suspend_max, owner, tuple(problems))


def parse_idle_seconds(text: str, where: str) -> float:
    """The idle seconds `where` (a file or a command) gave: one number (a trailing newline is fine)."""
    word = text.strip()
    try:
        seconds = float(word)
    except ValueError:
        raise IdleSourceError(f"{where} gave {word[:40]!r}, not a number of idle seconds") from None
    if not 0 <= seconds < float("inf"):
        raise IdleSourceError(f"{where} gave {word[:40]!r}: idle seconds are a number from 0")
    return seconds


def source_is_file(source: str, exists: bool, executable: bool) -> bool:
    """Whether DCT_IDLE_SOURCE names a file to read (else a command to run): an absolute path to a file
    that is not executable, or to no file yet (one written by a session script that has not run)."""
    if not source.startswith("/") or any(c.isspace() for c in source):
        return False
    return not (exists and executable)


def parse_logind(show_output: str, now_us: int) -> float | None:
    """Idle seconds from `loginctl show-session ID... -p IdleHint -p IdleSinceHint -p Class` blocks
    (blank-line separated); None when there is no user session (logind knows of no owner)."""
    idle: list[float] = []
    for block in re.split(r"\n\s*\n", show_output.strip()):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Class", "user") != "user":
            continue
        if fields.get("IdleHint") == "no":
            idle.append(0.0)
            continue
        since = fields.get("IdleSinceHint", "0")
        if fields.get("IdleHint") == "yes" and since.isdigit() and int(since) > 0:
            idle.append(max(now_us - int(since), 0) / 1e6)
    return min(idle) if idle else None


def owner_is_present(idle_seconds: float | None, idle_minutes: float, since_reclaim: float | None = None) -> bool:
    """Whether the owner counts as present: idle less than `idle_minutes`, or idle time unknown.

    `since_reclaim`: seconds since the owner pressed "I need it now"; the
    idle time counts from then at most, so the node lends again only once
    they have been away `idle_minutes` after it.
    """
    if idle_seconds is None:
        return True
    if since_reclaim is not None:
        idle_seconds = min(idle_seconds, max(since_reclaim, 0.0))
    return idle_seconds < idle_minutes * 60


def suspend_reason(node: str) -> str:
    """The reason a suspended job shows while it lasts."""
    return f"suspended: {node}'s owner is back; it resumes when they leave again"


def vacate_reason(node: str) -> str:
    """The reason a vacated job carries back to the queue."""
    return f"{node}'s owner came back"


# --- reading the owner's idle time -------------------------------------------------------


def read_idle_seconds(source: str) -> float | None:
    """The owner's idle seconds from `source` (DCT_IDLE_SOURCE), or from logind when `source` is "".

    None when logind knows of no session.  Raises IdleSourceError when the source cannot be read.
    """
    if not source:
        return logind_idle_seconds()
    exists = os.path.isfile(source)
    if source_is_file(source, exists, exists and os.access(source, os.X_OK)):
        try:
            with open(source) as f:
                return parse_idle_seconds(f.read(100), f"DCT_IDLE_SOURCE file {source}")
        except OSError as exc:
            raise IdleSourceError(f"DCT_IDLE_SOURCE file {source} could not be read: {exc.strerror}") from None
    try:
        done = subprocess.run(
            shlex.split(source), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IdleSourceError(f"DCT_IDLE_SOURCE command {source!r} could not run: {exc}") from None
    if done.returncode != 0:
        raise IdleSourceError(f"DCT_IDLE_SOURCE command {source!r} exited {done.returncode}: {done.stderr[:200]}")
    return parse_idle_seconds(done.stdout, f"DCT_IDLE_SOURCE command {source!r}")


def logind_idle_seconds() -> float | None:
    """logind's idle time over the user sessions, or None where there is no logind or no session."""
    try:
        listed = subprocess.run(
            ["loginctl", "list-sessions", "--no-legend"], capture_output=True, text=True, timeout=5, check=False
        )
        ids = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
        if listed.returncode != 0 or not ids:
            return None
        shown = subprocess.run(
            ["loginctl", "show-session", *ids, "-p", "IdleHint", "-p", "IdleSinceHint", "-p", "Class"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_logind(shown.stdout, time.time_ns() // 1000) if shown.returncode == 0 else None


# --- the node's state: written by the heartbeat loop, read by each job's watcher ----------


@dataclass
class Presence:
    present: bool = False
    reclaimed: bool = False  # present because the owner pressed "I need it now": vacate, not suspend
    idle_seconds: float | None = None
    problem: str = ""  # why the idle time could not be read ("" when it could)


_lock = threading.Lock()
_presence = Presence()
_enabled = False


def enable(on: bool) -> None:
    """This node is a desktop (agent.start, from DCT_NODE_POLICY); off, no job is ever paused."""
    global _enabled
    _enabled = on


def observe(config: DesktopConfig, since_reclaim: float | None, new_reclaim: bool = False) -> Presence:
    """One look at the owner (each heartbeat): read the idle time, decide, and keep it for the job watchers.

    `new_reclaim`: the owner pressed "I need it now" since the last look; the
    node's jobs are vacated (not suspended), and it stays so at least until
    the next look, whatever the idle time says.
    """
    problem = ""
    try:
        idle = read_idle_seconds(config.idle_source)
    except IdleSourceError as exc:
        idle, problem = None, str(exc)
    if idle is None and not problem:
        problem = "no idle time: logind is not there or knows of no user session; set DCT_IDLE_SOURCE"
    present = owner_is_present(idle, config.idle_minutes, since_reclaim)
    with _lock:
        reclaimed = new_reclaim or (present and _presence.reclaimed)
        present = present or reclaimed
        if problem and problem != _presence.problem:
            log.warning("desktop: %s; the owner counts as present (no jobs) until it can be read", problem)
        if present != _presence.present:
            log.info("desktop: the owner is %s", "back: jobs are suspended" if present else "away: jobs may run")
        _presence.present, _presence.reclaimed = present, reclaimed
        _presence.idle_seconds, _presence.problem = idle, problem
        return Presence(present, reclaimed, idle, problem)


def pause_wanted() -> bool:
    """True while this desktop's owner is present: its jobs must be stopped."""
    return _enabled and _presence.present


def vacate_wanted() -> bool:
    """True while the owner's "I need it now" stands: its jobs must leave at once."""
    return _enabled and _presence.present and _presence.reclaimed
