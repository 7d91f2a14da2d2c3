"""The utilisation of this node's GPUs, per job, once a heartbeat (agent.beat folds it into the job rows).

Where it comes from: DCT_GPU_UTILIZATION_SOURCE when set (a JSON file,
GPU index -> percent, read every beat: declared GPUs and tests); else NVML
(`nvmlDeviceGetUtilizationRates`, the share of the last sample period a
kernel ran) when the GPUs were probed through it; else nothing, and the jobs'
figures stay null.  Each job's last RECENT_SECONDS of samples stay here, in
memory, for its recent mean.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings

from dctoolkit.jobs.gpuuse import RECENT_SECONDS, JobSample, job_percent, recent_mean

log = logging.getLogger(__name__)

# (job id, attempt) -> its (monotonic time, percent) samples of the last RECENT_SECONDS.
_windows: dict[tuple[int, int], deque[tuple[float, float]]] = {}
_warned: set[str] = set()


def _warn_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning("GPU utilisation: %s; jobs' gpu_utilization stays null until it is fixed", what)


def read_source(path: str) -> dict[int, float]:
    """GPU index -> percent from a DCT_GPU_UTILIZATION_SOURCE file ({} when it cannot be read, said once)."""
    try:
        data = json.loads(Path(path).read_text())
        found = {int(k): float(v) for k, v in data.items()}
    except FileNotFoundError:
        return {}  # not written yet
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        _warn_once(f'DCT_GPU_UTILIZATION_SOURCE={path}: {exc}; write JSON like {{"0": 0, "1": 80}}')
        return {}
    return found


_nvml_ready: bool | None = None


def read_nvml() -> dict[int, float]:
    """GPU index -> percent through NVML ({} where there is none)."""
    global _nvml_ready
    try:
        import pynvml
    except ImportError:
        return {}
    if _nvml_ready is None:
        try:
            pynvml.nvmlInit()  # once: kept for the worker's life (each init costs tens of ms)
            _nvml_ready = True
        except pynvml.NVMLError as exc:
            _nvml_ready = False
            _warn_once(f"NVML did not start ({exc})")
    if not _nvml_ready:
        return {}
    try:
        return {
            i: float(pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(i)).gpu)
            for i in range(pynvml.nvmlDeviceGetCount())
        }
    except pynvml.NVMLError as exc:
        _warn_once(f"NVML failed ({exc})")
        return {}


def read_percents() -> dict[int, float]:
    """This node's GPUs' utilisation now: GPU index -> percent."""
    if settings.DCT_GPU_UTILIZATION_SOURCE:
        return read_source(settings.DCT_GPU_UTILIZATION_SOURCE)
    if settings.DCT_GPUS.strip():
        return {}  # declared GPUs, and nothing that says how busy they are
    return read_nvml()


def sample(
    jobs: Sequence[tuple[int, int, Sequence[int]]], percents: dict[int, float], now: float
) -> dict[int, JobSample]:
    """job id -> this beat's sample, for (job id, attempt, GPU indices) of the jobs running here; keeps
    each job's window, and forgets the jobs that are gone."""
    running = {(job_id, attempt) for job_id, attempt, _ in jobs}
    for key in [k for k in _windows if k not in running]:
        del _windows[key]
    out: dict[int, JobSample] = {}
    for job_id, attempt, indices in jobs:
        percent = job_percent(percents, indices)
        if percent is None:
            continue
        window = _windows.get((job_id, attempt))
        fresh = window is None
        if window is None:
            window = _windows[(job_id, attempt)] = deque()
        window.append((now, percent))
        while window and now - window[0][0] > RECENT_SECONDS:
            window.popleft()
        out[job_id] = JobSample(percent, recent_mean(window, now), fresh)
    return out
