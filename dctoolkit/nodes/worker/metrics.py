"""Probes this machine into a plain record: cores, memory, load, disk, GPUs.

No GPU is a normal answer.  NVML (nvidia-ml-py) is asked first; where it is
missing and TensorFlow is installed (requirements-gpu.txt), TensorFlow's
device list is the fallback.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import asdict, dataclass, field

import psutil

from dctoolkit.nodes.worker.gpus import Gpu, declared_gpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MachineMetrics:
    cpus: int
    threads: int
    memory_total_mb: int
    memory_available_mb: int
    load: float
    disk_free_mb: int
    gpus: list[dict] = field(default_factory=list)
    cuda: str = ""
    arch: str = ""  # platform.machine(): x86_64, aarch64 (the server shows it as ClassAd Arch)

    def as_dict(self) -> dict:
        return asdict(self)


def probe_machine(disk_path: str = "/") -> MachineMetrics:
    """This machine's metrics now."""
    memory = psutil.virtual_memory()
    gpus, cuda = probe_gpus()
    try:
        disk_free = psutil.disk_usage(disk_path).free
    except OSError:
        disk_free = 0
    return MachineMetrics(
        cpus=psutil.cpu_count(logical=False) or psutil.cpu_count() or 1,
        threads=psutil.cpu_count() or 1,
        memory_total_mb=memory.total // 2**20,
        memory_available_mb=memory.available // 2**20,
        load=round(os.getloadavg()[0], 2),
        disk_free_mb=disk_free // 2**20,
        gpus=[asdict(g) for g in gpus],
        cuda=cuda,
        arch=platform.machine(),
    )


_gpu_cache: tuple[list[Gpu], str] | None = None


def probe_gpus() -> tuple[list[Gpu], str]:
    """(GPUs, CUDA driver version): declared by DCT_GPUS, else NVML, else TensorFlow, else ([], "").

    Cached: GPUs do not come and go while a worker runs.
    """
    global _gpu_cache
    if _gpu_cache is None:
        from django.conf import settings

        declared = declared_gpus(settings.DCT_GPUS)
        _gpu_cache = (declared, "") if declared else _probe_nvml() or _probe_tensorflow() or ([], "")
    return _gpu_cache


def _probe_nvml() -> tuple[list[Gpu], str] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None  # no driver: no NVIDIA GPU here
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                Gpu(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else name,
                    memory_mb=int(memory.total // 2**20),
                    uuid=uuid.decode() if isinstance(uuid, bytes) else uuid,
                    capability=float(f"{major}.{minor}"),
                )
            )
        version = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        return gpus, f"{version // 1000}.{(version % 1000) // 10}"
    except pynvml.NVMLError as exc:
        log.warning("NVML is present but failed: %s", exc)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _probe_tensorflow() -> tuple[list[Gpu], str] | None:
    try:
        import tensorflow as tf
    except ImportError:
        return None
    devices = tf.config.list_physical_devices("GPU")
    if not devices:
        return None
    build = tf.sysconfig.get_build_info()
    return [Gpu(index=i, name=d.name) for i, d in enumerate(devices)], str(build.get("cuda_version", ""))
