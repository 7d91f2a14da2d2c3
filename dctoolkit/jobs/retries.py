"""When a job that exited runs again (pure): max_retries, success_exit_code, retry_until, retry_delay.

Only a run that ended by itself with an exit status is retried: a cancel, a
hold, a max_runtime or memory kill, a job that could not start are final.
"""

from __future__ import annotations

from dataclasses import dataclass

# retry_delay doubles after each retry, up to this (the contract's 10 minutes).
MAX_RETRY_DELAY_SECONDS = 600.0


@dataclass(frozen=True)
class RetryPolicy:
    """A job's retry keys (defaults: no retries, exit 0 is success)."""

    max_retries: int = 0
    success_exit_code: int = 0
    retry_until: int | None = None  # an exit code that ends the retries
    retry_delay_seconds: float | None = None


@dataclass(frozen=True)
class Verdict:
    """What one attempt's exit means: success, a retry (after `delay_seconds`), or final failure."""

    succeeded: bool
    retry: bool = False
    delay_seconds: float = 0.0
    note: str = ""  # added to the reason a person reads


def judge_exit(exit_code: int, policy: RetryPolicy, retries_used: int) -> Verdict:
    """The verdict on a run that exited with `exit_code` after `retries_used` retries."""
    if exit_code == policy.success_exit_code:
        return Verdict(succeeded=True)
    if policy.retry_until is not None and exit_code == policy.retry_until:
        return Verdict(succeeded=False, note=f"retry_until: exit status {exit_code} ends the retries")
    if retries_used >= policy.max_retries:
        note = f"after {retries_used} retr{'y' if retries_used == 1 else 'ies'}" if policy.max_retries else ""
        return Verdict(succeeded=False, note=note)
    delay = retry_delay(policy.retry_delay_seconds, retries_used)
    wait = f", in {delay:g} s" if delay else ""
    return Verdict(
        succeeded=False, retry=True, delay_seconds=delay, note=f"retry {retries_used + 1} of {policy.max_retries}{wait}"
    )


def retry_delay(base_seconds: float | None, retries_used: int) -> float:
    """`base_seconds` doubled once per retry already used, at most MAX_RETRY_DELAY_SECONDS."""
    if not base_seconds:
        return 0.0
    return float(min(base_seconds * 2.0 ** min(retries_used, 30), MAX_RETRY_DELAY_SECONDS))
