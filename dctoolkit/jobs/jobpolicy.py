"""HTCondor's job policy expressions: what happens to a job when it exits and while it waits or is held.

`on_exit_hold`, `on_exit_remove` are evaluated when a run ends by itself (an exit status or a signal);
`periodic_hold`, `periodic_release`, `periodic_remove` by the scheduler's housekeeping, every round,
for the jobs that have one (no other job is read).  `on_exit_hold_reason` / `periodic_hold_reason`
(string expressions) and `..._subcode` (integers) say why, as HTCondor's `HoldReason` and
`HoldReasonSubCode`.  The expressions are ClassAd expressions, evaluated by HTCondor's own bindings
(`classad2`) over the job's attributes as HTCondor names them (`JOB_ATTRIBUTES`) and its `+Attr`s.

As in HTCondor: on_exit_hold is asked first (true: the job is held, HoldReasonCode 3), then
on_exit_remove (false: the job runs again at once; its default is true); periodic_remove wins over
periodic_hold, which is asked for jobs not held, periodic_release for held ones.  An expression that is
not true (false, 0, UNDEFINED, ERROR) does nothing; so an on_exit_remove that is UNDEFINED lets the job
leave the queue (never an endless loop from a misspelt name).

Pure: no Django, no clock (`now` comes in); each distinct text is compiled once; `classad2` is imported
on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import classad2  # type: ignore[import-untyped]  # (no py.typed in the htcondor wheel)

EXIT_KEYS = ("on_exit_hold", "on_exit_remove", "on_exit_hold_reason", "on_exit_hold_subcode")
PERIODIC_KEYS = (
    "periodic_hold",
    "periodic_release",
    "periodic_remove",
    "periodic_hold_reason",
    "periodic_hold_subcode",
)
POLICY_KEYS = (*EXIT_KEYS, *PERIODIC_KEYS)
# What each key's value must be; a reason is a string, a subcode a whole number, the rest true or false.
_REASON_KEYS = ("on_exit_hold_reason", "periodic_hold_reason")
_SUBCODE_KEYS = ("on_exit_hold_subcode", "periodic_hold_subcode")
# The longest expression read (characters), as for requirements.
MAX_EXPRESSION_CHARS = 10000

# The names an expression may read, in the order a message lists them.
JOB_ATTRIBUTES = (
    *("ExitCode", "ExitBySignal", "ExitSignal", "NumJobStarts", "JobRunCount", "JobStatus", "EnteredCurrentStatus"),
    *("CurrentTime", "QDate", "JobStartDate", "RemoteWallClockTime", "LastRemoteWallClockTime", "HoldReason"),
    *("HoldReasonCode", "HoldReasonSubCode", "ClusterId", "ProcId", "RequestCpus"),
    *("RequestMemory", "RequestGpus", "JobUniverse", "Owner", "NumHolds"),
)


class JobStatus(IntEnum):
    """HTCondor's JobStatus numbers."""

    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    SUSPENDED = 7


# HTCondor's HoldReasonCode: 1 the owner held it (condor_hold), 3 a policy expression did, 15 submitted held.
HOLD_BY_USER = 1
HOLD_BY_POLICY = 3
HOLD_SUBMITTED = 15
VANILLA_UNIVERSE = 5


@dataclass(frozen=True)
class JobFacts:
    """A job as its policy expressions see it (times in Unix seconds; `attributes`: its +Attr expressions)."""

    now: float
    status: JobStatus
    entered_status: float
    qdate: float
    starts: int = 0
    exit_code: int | None = None  # negative: killed by that signal (dctoolkit's convention)
    start_date: float | None = None
    wall_seconds: float = 0.0  # every run so far
    last_wall_seconds: float = 0.0
    hold_reason: str = ""
    hold_code: int | None = None
    hold_subcode: int | None = None
    cluster: int = 0
    process: int = 0
    request_cpus: int = 1
    request_memory_mb: int = 0
    request_gpus: int = 0
    owner: str = ""  # the user name
    holds: int = 0  # the times it was held (HTCondor's NumHolds; one submitted held starts at 0)
    attributes: Mapping[str, str] = field(default_factory=dict)

    def ad(self) -> dict[str, Any]:
        """The job's attributes by HTCondor's names (those without a value are left out: UNDEFINED)."""
        signal = self.exit_code is not None and self.exit_code < 0
        attrs: dict[str, Any] = {
            "NumJobStarts": self.starts,
            "JobRunCount": self.starts,
            "JobStatus": int(self.status),
            "EnteredCurrentStatus": int(self.entered_status),
            "CurrentTime": int(self.now),
            "QDate": int(self.qdate),
            "RemoteWallClockTime": float(self.wall_seconds),
            "LastRemoteWallClockTime": float(self.last_wall_seconds),
            "ClusterId": self.cluster,
            "ProcId": self.process,
            "RequestCpus": self.request_cpus,
            "RequestMemory": self.request_memory_mb,
            "RequestGpus": self.request_gpus,
            "JobUniverse": VANILLA_UNIVERSE,
            "Owner": self.owner,
            "NumHolds": self.holds,
        }
        if self.exit_code is not None:
            attrs["ExitBySignal"] = signal
            if signal:
                attrs["ExitSignal"] = -self.exit_code
            else:
                attrs["ExitCode"] = self.exit_code
        if self.start_date is not None:
            attrs["JobStartDate"] = int(self.start_date)
        if self.status == JobStatus.HELD:
            attrs.update(HoldReason=self.hold_reason, HoldReasonCode=self.hold_code or 0)
            attrs["HoldReasonSubCode"] = self.hold_subcode or 0
        return attrs


@dataclass(frozen=True)
class Decision:
    """What a policy says to do: "" (nothing), "hold", "rerun" (on_exit_remove false), "release", "remove"."""

    action: str = ""
    reason: str = ""
    subcode: int = 0


NOTHING = Decision()


class PolicyError(ValueError):
    """A policy expression classad2 cannot read; the message says how to fix it."""


def check(key: str, text: str) -> None:
    """Raise PolicyError when `text` is no ClassAd expression (the message names `key`)."""
    _tree(key, text)


def on_exit(policy: Mapping[str, str], facts: JobFacts) -> Decision:
    """The verdict of on_exit_hold, then on_exit_remove, on a run that just ended (`facts.status` RUNNING)."""
    if not any(key in policy for key in EXIT_KEYS):
        return NOTHING
    ad = _ad(facts)
    if _true(policy, "on_exit_hold", ad):
        why = _reason(policy, "on_exit_hold", ad)
        return Decision("hold", why, _subcode(policy, "on_exit_hold_subcode", ad))
    if "on_exit_remove" in policy and _false(policy["on_exit_remove"], ad):
        return Decision("rerun", f"on_exit_remove = {_shown(policy['on_exit_remove'])} is false: it runs again")
    return NOTHING


def periodic(policy: Mapping[str, str], facts: JobFacts) -> Decision:
    """The verdict of the periodic expressions on a job that has not ended: remove, hold (not held) or release
    (held)."""
    if not any(key in policy for key in PERIODIC_KEYS):
        return NOTHING
    ad = _ad(facts)
    if _true(policy, "periodic_remove", ad):
        return Decision("remove", f"removed by periodic_remove = {_shown(policy['periodic_remove'])}")
    if facts.status == JobStatus.HELD:
        if _true(policy, "periodic_release", ad):
            return Decision("release", f"released by periodic_release = {_shown(policy['periodic_release'])}")
        return NOTHING
    if _true(policy, "periodic_hold", ad):
        why = _reason(policy, "periodic_hold", ad)
        return Decision("hold", why, _subcode(policy, "periodic_hold_subcode", ad))
    return NOTHING


def has_periodic(policy: Mapping[str, str]) -> bool:
    """Whether the housekeeping must look at a job with `policy` (hold reasons alone need no look)."""
    return any(key in policy for key in ("periodic_hold", "periodic_release", "periodic_remove"))


# --- evaluation ------------------------------------------------------------------------------------


def _ad(facts: JobFacts) -> classad2.ClassAd:
    import classad2

    ad = classad2.ClassAd(facts.ad())
    for name, text in facts.attributes.items():
        try:
            ad[name] = _tree("+" + name, text)
        except PolicyError:
            continue  # an attribute that is no expression is left out (UNDEFINED), as a typo in one would be
    return ad


def _value(key: str, text: str, ad: classad2.ClassAd) -> Any:
    try:
        return _tree(key, text).eval(ad)
    except PolicyError:
        return None  # checked at submit; one that no longer reads does nothing


def _true(policy: Mapping[str, str], key: str, ad: classad2.ClassAd) -> bool:
    if key not in policy:
        return False
    value = _value(key, policy[key], ad)
    # As classad2's ClassAd.matches: true, or a non-zero number (UNDEFINED and ERROR are an IntEnum: not numbers).
    return value is True or (type(value) in (int, float) and value != 0)


def _false(text: str, ad: classad2.ClassAd) -> bool:
    value = _value("on_exit_remove", text, ad)
    return value is False or (type(value) in (int, float) and value == 0)


def _reason(policy: Mapping[str, str], key: str, ad: classad2.ClassAd) -> str:
    given = policy.get(f"{key}_reason")
    if given is not None:
        value = _value(f"{key}_reason", given, ad)
        if isinstance(value, str) and value.strip():
            return value.strip()[:500]
    return f"held by {key} = {_shown(policy[key])}"


def _subcode(policy: Mapping[str, str], key: str, ad: classad2.ClassAd) -> int:
    given = policy.get(key)
    value = _value(key, given, ad) if given is not None else 0
    return value if type(value) is int and -(2**31) <= value < 2**31 else 0


@lru_cache(maxsize=4096)
def _tree(key: str, text: str) -> classad2.ExprTree:
    import classad2

    if len(text) > MAX_EXPRESSION_CHARS:
        raise PolicyError(f"{key} is {len(text):,} characters long; keep it under {MAX_EXPRESSION_CHARS}")
    try:
        return classad2.ExprTree(text)
    except (classad2.ClassAdException, ValueError, RuntimeError):
        raise PolicyError(f"{key} = {_shown(text)}: not a ClassAd expression; {_example(key)}") from None


def _example(key: str) -> str:
    if key in _REASON_KEYS:
        return 'write a string expression, such as strcat("exit code ", ExitCode)'
    if key in _SUBCODE_KEYS:
        return "write a whole number or an expression of one, such as ExitCode"
    if key.startswith("+"):
        return 'write the attribute as HTCondor does, such as +ProjectName = "lab"'
    return (
        "write it as HTCondor does, such as (ExitBySignal == True) || (ExitCode != 0) or "
        "(NumJobStarts < 5) && ((CurrentTime - EnteredCurrentStatus) > 60)"
    )


def _shown(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}…"
