"""GPU time not wasted: the arithmetic of a job's GPU utilisation.  Pure: samples and times in, figures and
sentences out (no Django, no NVML, no clock).

A node samples, once a heartbeat, the utilisation (percent) of each GPU its
running jobs hold (nodes/worker/gpuwatch.py); a job's sample is the mean
over its GPUs.  The job row keeps a tally (`GpuTally`): the sum and count of
its samples in this attempt (the mean over the run), the mean of the last
RECENT_SECONDS as the node saw it, and since when every sample has been
under the idle threshold.  A job whose GPUs have stayed under
`IdleRule.percent` for `IdleRule.after_seconds` is idle: its page and its
owner's mail say so, and a waiting GPU job's reason names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

# "The last 10 minutes" of the job object's gpu_utilization.
RECENT_SECONDS = 600.0


@dataclass(frozen=True)
class IdleRule:
    """GPUs under `percent` for `after_seconds` are held idle (DCT_GPU_IDLE_PERCENT, DCT_GPU_IDLE_AFTER)."""

    percent: float = 5.0
    after_seconds: float = 1800.0


@dataclass(frozen=True)
class GpuTally:
    """What a job's row keeps of its GPU samples in this attempt."""

    total: float = 0.0  # the samples' sum, in percent
    samples: int = 0
    recent: float | None = None  # mean over the last RECENT_SECONDS (the node's window)
    idle_since: datetime | None = None  # the first of the unbroken run of samples under the threshold
    sampled_at: datetime | None = None  # the last sample

    @property
    def mean(self) -> float | None:
        return self.total / self.samples if self.samples else None

    @property
    def idle_seconds(self) -> float:
        """How long the samples have stayed under the threshold (0 when the last one was not)."""
        if self.idle_since is None or self.sampled_at is None:
            return 0.0
        return max((self.sampled_at - self.idle_since).total_seconds(), 0.0)


@dataclass(frozen=True)
class JobSample:
    """One heartbeat's sample of a job, as the node sends it: its GPUs' mean now, the mean of the node's
    last RECENT_SECONDS of its samples, and whether it is the first of this attempt."""

    percent: float
    recent: float | None = None
    fresh: bool = False


def job_percent(gpu_percents: Mapping[int, float], indices: Sequence[int]) -> float | None:
    """The mean utilisation of a job's GPUs `indices`, from the node's index -> percent; None unless every
    one of them was read."""
    if not indices or any(i not in gpu_percents for i in indices):
        return None
    return sum(min(max(gpu_percents[i], 0.0), 100.0) for i in indices) / len(indices)


def recent_mean(samples: Iterable[tuple[float, float]], now: float, seconds: float = RECENT_SECONDS) -> float | None:
    """The mean of the (time, percent) samples taken in the last `seconds` before `now`; None when none was."""
    kept = [p for t, p in samples if now - t <= seconds]
    return sum(kept) / len(kept) if kept else None


def fold(prev: GpuTally, sample: JobSample, now: datetime, rule: IdleRule) -> GpuTally:
    """The tally after one more sample at `now` (a `fresh` sample starts a new attempt: what the row held
    belongs to an earlier run and is dropped)."""
    base = GpuTally() if sample.fresh else prev
    under = sample.percent < rule.percent
    return GpuTally(
        total=base.total + sample.percent,
        samples=base.samples + 1,
        recent=sample.percent if sample.recent is None else sample.recent,
        idle_since=(base.idle_since or now) if under else None,
        sampled_at=now,
    )


def is_idle(tally: GpuTally, rule: IdleRule) -> bool:
    """Whether the job's GPUs have stayed under the threshold for the rule's time."""
    return tally.idle_since is not None and tally.idle_seconds >= rule.after_seconds


def spell(seconds: float) -> str:
    """`45 min`, `2 h 05 min`, or `12 s` under a minute: how long GPUs have been idle."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _level(tally: GpuTally, rule: IdleRule) -> str:
    """`0%` (the last RECENT_SECONDS' mean, when that is under the threshold), else `under 5%`."""
    # 4.6 would print as "5%", which reads as not under 5%: a level that rounds to the threshold is "under"
    if tally.recent is not None and round(tally.recent) < rule.percent:
        return f"{tally.recent:.0f}%"
    return f"under {rule.percent:g}%"


def holding(job_id: int, gpus: int, tally: GpuTally, rule: IdleRule, ended: bool = False) -> str:
    """`job 812 holds 2 GPUs at 0% for 45 min` (`held` once the job has ended)."""
    noun = "GPU" if gpus == 1 else "GPUs"
    verb = "held" if ended else "holds"
    return f"job {job_id} {verb} {gpus} {noun} at {_level(tally, rule)} for {spell(tally.idle_seconds)}"


def idle_line(job_id: int, gpus: int, tally: GpuTally, rule: IdleRule, gpu_weight: float,
              ended: bool = False) -> str:  # fmt: skip
    """The line an idle job's page and mail carry, with what its GPUs cost an hour (DCT_BILLING's gpu weight:
    an hour of them charges its owner's fair share that many unit-hours)."""
    held = holding(job_id, gpus, tally, rule, ended)
    if gpu_weight <= 0:
        return f"{held}; no one else can use {'it' if gpus == 1 else 'them'} meanwhile"
    return f"{held}; that {'cost' if ended else 'costs'} {gpus * gpu_weight:g} GPU-units an hour"


@dataclass(frozen=True)
class IdleHolder:
    """A running job holding GPUs idle, as a waiting job's reason names it."""

    node: str
    phrase: str  # `job 812 holds 2 GPUs at 0% for 45 min`


def idle_holders_note(holders: Sequence[IdleHolder], nodes: Iterable[str], listed: int = 3) -> str:
    """`; job 812 holds 2 GPUs at 0% for 45 min on node-1`, for the holders on `nodes` ("" when none):
    what a waiting GPU job's reason adds."""
    names = set(nodes)
    mine = [h for h in holders if h.node in names]
    if not mine:
        return ""
    shown = ", ".join(f"{h.phrase} on {h.node}" for h in mine[:listed])
    more = f" and {len(mine) - listed} more" if len(mine) > listed else ""
    return f"; GPUs held idle: {shown}{more}"


def utilization(job_id: int, gpus: int, tally: GpuTally, rule: IdleRule, gpu_weight: float,
                ended: bool) -> dict[str, object] | None:  # fmt: skip
    """The job object's `gpu_utilization`: None for a job holding no GPUs; else the mean over the run and
    over the last 10 minutes (None before a sample), how long it has been under the threshold, and the
    idle line (None unless idle)."""
    if gpus <= 0:
        return None
    return {
        "mean": None if tally.mean is None else round(tally.mean, 1),
        "last_10_minutes": None if tally.recent is None or not tally.samples else round(tally.recent, 1),
        "samples": tally.samples,
        "idle_seconds": round(tally.idle_seconds, 1),
        "idle": idle_line(job_id, gpus, tally, rule, gpu_weight, ended) if is_idle(tally, rule) else None,
    }
