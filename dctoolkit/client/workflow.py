"""What the workflow tools' integrations share: a job script's submission from what the tool asks for.

The Snakemake executor plugin (integrations/snakemake-executor-plugin-dctoolkit), the dask-jobqueue
cluster (dctoolkit.client.dask) and the submitit plugin (dctoolkit.client.submitit) each write a
shell script that starts the tool's own job-side program, and submit it as `dct submit --script` would.
Standard library only: the tools import this from their own Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Requests:
    """What one job asks for, in dctoolkit's submission keys (None: the key is left out, the default holds)."""

    cpus: int = 1
    memory_mb: int | None = None
    gpus: int = 0
    gpu_type: str | None = None
    minutes: float | None = None
    name: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def lines(self, script: str) -> list[str]:
        """The submission file's lines for running `script` (a file name staged beside it)."""
        lines = [f"executable = {script}", f"request_cpus = {max(1, int(self.cpus))}"]
        if self.memory_mb:
            lines.append(f"request_memory = {math.ceil(self.memory_mb)}MB")
        if self.gpus:
            lines.append(f"request_gpus = {int(self.gpus)}")
        if self.gpu_type:
            lines.append(f"gpu_type = {self.gpu_type}")
        if self.minutes:
            lines.append(f"max_runtime = {math.ceil(self.minutes * 60)}s")
        if self.name:
            lines.append(f"name = {safe_name(self.name)}")
        lines += [f"{key} = {value}" for key, value in self.extra.items()]
        return lines

    def submission(self, script: str) -> str:
        return "\n".join([*self.lines(script), "queue", ""])


def safe_name(text: str) -> str:
    """A job name made of letters, digits and `._-` (what a tool's name for a job may not be)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:100] or "job"


def snakemake_requests(name: str, threads: int, resources: Mapping[str, object]) -> Requests:
    """A Snakemake job's requests: `cpus_per_task` (else `threads`) cores, `mem_mb` memory, `runtime`
    minutes, `gpu` (or `gpus`) GPUs of `gpu_model`; Snakemake's own bookkeeping (`_cores`, `tmpdir`,
    `disk_mb`, ...) is not asked for."""

    def number(key: str) -> float | None:
        value = resources.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if value > 0 else None

    cpus = number("cpus_per_task") or threads or 1
    gpus = number("gpu") or number("gpus") or 0
    model = resources.get("gpu_model")
    return Requests(
        cpus=int(cpus),
        memory_mb=int(memory) if (memory := number("mem_mb")) else None,
        gpus=int(gpus),
        gpu_type=str(model) if model and gpus else None,
        minutes=number("runtime"),
        name=name,
    )


_CLOCK = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def dct_time(walltime: str) -> str:
    """A walltime as `--time` takes it: Slurm's `[D-]HH:MM:SS` or `MM:SS` becomes seconds; `90m`, `2h`
    and the like pass as they are (dct checks them)."""
    match = _CLOCK.match(walltime.strip())
    if not match:
        return walltime.strip()
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return f"{((days * 24 + hours) * 60 + minutes) * 60 + seconds}s"
