"""The utilisation of this node's GPUs, per job, once a heartbeat (agent.beat folds it into the job rows).

Where it comes from: DCT_GPU_UTILIZATION_SOURCE when set (a JSON file,
GPU index -> percent, read every beat: declared GPUs and tests); else NVML
(`nvmlDeviceGetUtilizationRates`, the share of the last sample period a
kernel ran) when the GPUs were probed through it; else nothing, and the jobs'
figures stay null.  Each job's last RECENT_SECONDS of samples stay here, in
memory, for its recent mean.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections import deque
from collections.abc import Sequence

from django.conf import settings

from dctoolkit.jobs.gpuuse import RECENT_SECONDS, JobSample, job_percent, recent_mean
from dctoolkit.lib.ids import bounded_int

log = logging.getLogger(__name__)

# (job id, attempt) -> its (monotonic time, percent) samples of the last RECENT_SECONDS.
_windows: dict[tuple[int, int], deque[tuple[float, float]]] = {}
_warned: set[str] = set()


def _warn_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning("GPU utilisation: %s; jobs' gpu_utilization stays null until it is fixed", what)


def read_source(path: str) -> dict[int, float]:
    """GPU index -> percent from a DCT_GPU_UTILIZATION_SOURCE file ({} when it cannot be read, said once).

    The file may lie where a job can write it (a read-write DCT_SANDBOX_PATHS folder, or any folder of the
    node's user when the sandbox is off), so it is read as untrusted: never through a link (O_NOFOLLOW),
    never blocking (a FIFO or a device in its place is refused, not waited on), at most MAX_SOURCE_BYTES,
    and every value checked.  Each kind of problem is said once, in words that hold none of its content.
    """
    try:
        raw = _read_capped(path)
    except FileNotFoundError:
        return {}  # not written yet
    except BadSourceError as problem:
        _warn_once(f'DCT_GPU_UTILIZATION_SOURCE={path}: {problem}; write JSON like {{"0": 0, "1": 80}}')
        return {}
    try:
        return _percents(raw)
    except BadSourceError as problem:
        _warn_once(f'DCT_GPU_UTILIZATION_SOURCE={path}: {problem}; write JSON like {{"0": 0, "1": 80}}')
        return {}


# The largest source read (bytes): a JSON of a few hundred GPUs' percents is well under it.
MAX_SOURCE_BYTES = 64 * 1024


class BadSourceError(ValueError):
    """Why a DCT_GPU_UTILIZATION_SOURCE file gives no figures (a fixed phrase: no content of the file)."""


def _read_capped(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadSourceError("is a link; write the file itself there (a link is not followed)") from None
        raise BadSourceError(f"cannot be opened ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadSourceError("not a regular file")
        chunks, size = [], 0
        while size <= MAX_SOURCE_BYTES and (chunk := os.read(fd, MAX_SOURCE_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise BadSourceError(f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if size > MAX_SOURCE_BYTES:
        raise BadSourceError(f"larger than {MAX_SOURCE_BYTES // 1024} KiB")
    return b"".join(chunks)


def _percents(raw: bytes) -> dict[int, float]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise BadSourceError("not JSON") from None
    if not isinstance(data, dict):
        raise BadSourceError("not a JSON object")
    found: dict[int, float] = {}
    for key, value in data.items():
        index = bounded_int(key, 0, MAX_GPU_INDEX)
        if index is None:
            raise BadSourceError("a key is not a GPU index (a whole number)")
        if type(value) not in (int, float) or not 0 <= value <= 100:  # NaN fails both; a bool is no number
            raise BadSourceError("a value is not a percent from 0 to 100")
        found[index] = float(value)
    return found


# The highest GPU index read (no node has more GPUs).
MAX_GPU_INDEX = 1023


def writable_by_jobs(source: str, extra_paths: Sequence[tuple[str, bool]], sandboxed: bool) -> str:
    """Why jobs on this node could write the DCT_GPU_UTILIZATION_SOURCE file, or "" (said at node start).

    `extra_paths`: (path, writable) of DCT_SANDBOX_PATHS.  Without the sandbox a job runs as the node's
    user and can write whatever it can; granted folders are per user and not known here (README says so).
    """
    if not source:
        return ""
    if not sandboxed:
        return "the sandbox is off: jobs run as this node's user and can write it wherever that user can"
    real = os.path.realpath(source)
    for path, writable in extra_paths:
        if writable and (real == path or real.startswith(path.rstrip("/") + "/")):
            return f"it lies in {path}, which DCT_SANDBOX_PATHS gives jobs read-write"
    return ""


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
