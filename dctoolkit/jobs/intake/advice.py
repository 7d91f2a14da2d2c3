"""Advice: requested versus used (the line emails and the job page show, and a better request when the gap
is large), and which key a misspelt submission key most likely meant.

Pure arithmetic on numbers a finished job carries; no ORM, no clock.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from dctoolkit.lib.units import format_mb

# A request is worth changing when the job used less than this share of it...
UNDERUSE = 0.5
# ...or more than this share of it (cpus: more threads than cores asked for; memory: close to the kill line).
OVERUSE_CPUS = 1.25
OVERUSE_MEMORY = 0.9
# Head room a suggestion leaves above what was used.
HEADROOM = 1.5
# The default memory request: suggesting less than it helps nobody.
DEFAULT_MEMORY_MB = 256
# Runs this short say little about a job's average CPU use.
MIN_RUN_SECONDS = 1.0


@dataclass(frozen=True)
class Usage:
    request_cpus: int
    request_memory_mb: int
    run_seconds: float | None
    cpu_seconds: float | None
    max_rss_mb: float | None

    @property
    def used_cpus(self) -> float | None:
        if not self.run_seconds or self.cpu_seconds is None:
            return None
        return self.cpu_seconds / self.run_seconds


@dataclass(frozen=True)
class Advice:
    comparison: str  # "asked for 4 cpus and 8.0 GB, used 1.1 cpus and 620 MB peak"
    suggestions: tuple[str, ...]  # submission lines, e.g. "request_cpus = 2"


def compare(usage: Usage) -> Advice | None:
    """What was asked for against what was used, with suggestions; None when the job never ran."""
    used_cpus = usage.used_cpus
    if used_cpus is None and not usage.max_rss_mb:  # a peak of 0: the run was too short to sample
        return None
    asked = f"asked for {plural(usage.request_cpus, 'cpu')} and {format_mb(usage.request_memory_mb)}"
    used = []
    if used_cpus is not None:
        used.append(f"{used_cpus:.1f} cpus")
    if usage.max_rss_mb:
        used.append(f"{format_mb(usage.max_rss_mb)} peak")
    suggestions = [s for s in (suggest_cpus(usage), suggest_memory(usage)) if s]
    return Advice(f"{asked}, used {' and '.join(used)}", tuple(suggestions))


def suggest_cpus(usage: Usage) -> str | None:
    used = usage.used_cpus
    if used is None or (usage.run_seconds or 0) < MIN_RUN_SECONDS:
        return None
    asked = usage.request_cpus
    if asked > 1 and used < asked * UNDERUSE:
        better = max(1, math.ceil(used * 1.25))
    elif used > asked * OVERUSE_CPUS:
        better = math.ceil(used)
    else:
        return None
    return f"request_cpus = {better}" if better != asked else None


def suggest_memory(usage: Usage) -> str | None:
    peak, asked = usage.max_rss_mb, usage.request_memory_mb
    if not peak:
        return None
    better = nice_size_mb(peak * HEADROOM)
    if peak < asked * UNDERUSE and asked > DEFAULT_MEMORY_MB:
        better = max(better, DEFAULT_MEMORY_MB)
    elif peak > asked * OVERUSE_MEMORY:
        better = max(better, asked + 1)
    else:
        return None
    return f"request_memory = {size_text(better)}" if better != asked else None


def nice_size_mb(mb: float) -> int:
    """Round up to a size people write: a multiple of 64 MB below 1 GB, of 256 MB above."""
    step = 64 if mb < 1024 else 256
    return max(step, math.ceil(mb / step) * step)


def size_text(mb: int) -> str:
    """A size as a submission file writes it: `768MB`, `2GB`, `1536MB`."""
    return f"{mb // 1024}GB" if mb % 1024 == 0 else f"{mb}MB"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# A key as written is taken for a known key only this close (difflib's ratio): `request_cpu` is
# `request_cpus`, but `request_disk` is not `request_gpus` (both differ in 3-4 letters of 12).
KEY_SIMILARITY = 0.85


def suggest_key(key: str, known: Sequence[str]) -> str | None:
    """The known key `key` is most likely a misspelling of, or None when none is close enough.

    Compared without case or underscores (HTCondor's spellings: `RequestCpus`); a key that is a known
    key's prefix or differs from one by one letter counts as close whatever the ratio.
    """
    want = key.lower().replace("_", "")
    best, best_score = None, 0.0
    for name in known:
        flat = name.replace("_", "")
        score = difflib.SequenceMatcher(None, want, flat).ratio()
        if _one_edit(want, flat):
            score = max(score, 0.9)
        if score > best_score:
            best, best_score = name, score
    return best if best_score >= KEY_SIMILARITY else None


def _one_edit(a: str, b: str) -> bool:
    """Whether `a` becomes `b` by one inserted, deleted, replaced or swapped letter."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))
