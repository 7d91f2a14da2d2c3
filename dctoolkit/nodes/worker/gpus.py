"""A node's GPUs as a plain record, and the ones a node declares (DCT_GPUS) where there is no NVML.

Pure (no NVML, no psutil): settings checks DCT_GPUS with it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from dctoolkit.lib.units import UnitError, parse_size_mb


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mb: int = 0
    uuid: str = ""
    capability: float = 0.0  # CUDA compute capability, major.minor (0: not known)


def declared_gpus(text: str) -> list[Gpu]:
    """GPUs a node declares instead of probing (like Slurm's gres.conf): `2`, or `NAME[:MEMORY[:CAPABILITY]]`
    per GPU, comma-separated (`A100:40GB:8.0,T4:16GB`).  Raises UnitError naming a bad part."""
    text = text.strip()
    if not text:
        return []
    if text.isdigit():
        return [Gpu(index=i, name="declared GPU") for i in range(int(text))]
    gpus: list[Gpu] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, rest = part.partition(":")
        memory, _, capability = rest.partition(":")
        if not name.strip():
            raise UnitError(f"'{part}' names no GPU; write NAME[:MEMORY[:CAPABILITY]] per GPU, like A100:40GB,T4:16GB")
        memory_mb = parse_size_mb(memory.strip()) if memory.strip() else 0
        try:
            level = float(capability) if capability.strip() else 0.0
        except ValueError:
            raise UnitError(f"'{part}': '{capability}' is not a compute capability; write it like 8.0") from None
        gpus.append(Gpu(index=len(gpus), name=name.strip(), memory_mb=memory_mb, capability=level))
    return gpus
