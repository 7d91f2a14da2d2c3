"""Sizes and durations as people write them (`512MB`, `4GB`, `90s`, `2h`)."""

from __future__ import annotations

import math
import re


class UnitError(ValueError):
    """A size or duration that cannot be read; the message lists accepted forms."""


_SIZE_UNITS_MB = {
    "": 1,
    "k": 1 / 1024,
    "kb": 1 / 1024,
    "m": 1,
    "mb": 1,
    "g": 1024,
    "gb": 1024,
    "t": 1024**2,
    "tb": 1024**2,
}
_TIME_UNITS_S = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$", re.ASCII)
# The largest memory request and duration anyone means (1024 TB, a year): bigger
# numbers are typing mistakes, and unbounded ones become inf, which no page,
# JSON document or timer can hold (and 1024 TB in MB still fits the database's
# 32-bit column).
MAX_SIZE_MB = 1024**3
MAX_RUNTIME_SECONDS = 365 * 86400  # a job's max_runtime
MAX_DURATION_SECONDS = 100 * 365 * 86400  # any other duration (purge ages, half-lives)


def parse_size_mb(text: str) -> int:
    """`512MB`, `4GB`, `1.5G`, `2048` (bare numbers are MB) -> whole megabytes (at least 1)."""
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS_MB:
        raise UnitError(f"'{_shown(text)}' is not a size; write it like 512MB, 4GB or 2048 (a bare number is MB)")
    mb = float(match.group(1)) * _SIZE_UNITS_MB[unit]
    if not math.isfinite(mb) or mb > MAX_SIZE_MB:
        raise UnitError(f"'{_shown(text)}' is more than the largest size, 1024TB; ask for what the job needs, like 4GB")
    return max(1, round(mb))


def parse_duration(text: str, max_seconds: float = MAX_DURATION_SECONDS) -> float:
    """`90s`, `10m`, `2h`, `1d`, `1h30m`, `45` (bare numbers are seconds) -> seconds (> 0, at most max_seconds)."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([a-z]*)", cleaned, re.ASCII)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned or any(u not in _TIME_UNITS_S for _, u in parts):
        raise UnitError(f"'{_shown(text)}' is not a duration; write it like 90s, 10m, 2h, 1d or 1h30m")
    seconds = sum(float(n) * _TIME_UNITS_S[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds > max_seconds:
        longest = f"{max_seconds / 86400:g}d"
        raise UnitError(f"'{_shown(text)}' is longer than the longest duration, {longest}; write it like 2h or 30d")
    if seconds <= 0:
        raise UnitError(f"'{_shown(text)}' is not a positive duration; write it like 90s, 10m or 2h")
    return seconds


def _shown(text: str, limit: int = 40) -> str:
    """`text` as a message quotes it: stripped, and cut short when long."""
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def format_mb(mb: float | None, missing: str = "-") -> str:
    """A size for people: `512 MB`, `4.0 GB`; `missing` when unknown."""
    if mb is None or not math.isfinite(mb):
        return missing
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def format_seconds(seconds: float | None, missing: str = "-") -> str:
    """A duration for people, the one format of the command line, the portal and the mails:
    `0.03s`, `5.2s`, `42s`, `3m05s`, `2h01m`, `3d04h`; `missing` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return missing
    s = int(seconds)
    if s < 60:
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
