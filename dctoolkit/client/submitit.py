"""submitit on dctoolkit: `submitit.AutoExecutor(folder, cluster="dctoolkit")`.

    import submitit
    executor = submitit.AutoExecutor(folder="runs/%j", cluster="dctoolkit")
    executor.update_parameters(cpus_per_task=2, mem_gb=4, timeout_min=30, dctoolkit_labels="avx512")
    job = executor.submit(pow, 2, 10)
    print(job.result())                 # 1024, computed on a node

submitit finds this executor through the `submitit` entry points of dctoolkit's pyproject (so
`pip install -e .` where submitit is installed is all it takes).  Each job is a script submitted
with `dct submit --script --parsable` (cpus_per_task, mem_gb, gpus_per_node, timeout_min and name
as --cpus, --memory, --gpus, --time, --name; `dctoolkit_labels` as `labels`); every job's state
comes from one `dct status ID...` for all of them; `job.cancel()` runs `dct-cancel`.

As on Slurm, the folder is shared: the job reads its pickled call there and writes its result and
logs there, so the folder must be visible to the job read-write (a folder granted to you, or
DCT_SANDBOX_PATHS), and the job runs this Python (`dctoolkit_python` to choose another) with
submitit installed.  What runs inside the job is submitit itself and the few lines of JOB_SIDE,
carried in the script: the job never imports dctoolkit (it cannot see the project).

One task per job: dctoolkit runs one program per job (nodes and tasks_per_node above 1 are refused).
"""

from __future__ import annotations

import math
import shlex
import sys
import typing as tp
from pathlib import Path

from submitit.core import core, job_environment, utils

# dctoolkit's states as submitit's watcher tells them (Slurm's words: its `is_done` knows those).
STATES = {
    "waiting": "PENDING",
    "queued": "PENDING",
    "held": "PENDING",
    "dispatched": "PENDING",
    "running": "RUNNING",
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
}
# What the job runs (python -c): submitit's own job side, with this cluster's job environment given to it
# directly; it is not looked up through the entry points, whose module (this one) the job cannot import.
JOB_SIDE = """
import sys
from submitit.core import job_environment, plugins
from submitit.core.submission import process_job

class DctoolkitJobEnvironment(job_environment.JobEnvironment):
    _env = {"job_id": "DCT_JOB_ID", "num_tasks": "DCT_NTASKS", "num_nodes": "DCT_NNODES", "node": "DCT_NODEID",
            "global_rank": "DCT_GLOBALID", "local_rank": "DCT_LOCALID"}

environment = DctoolkitJobEnvironment()
plugins.get_job_environments = lambda: {environment.name(): environment}
process_job(sys.argv[1])
"""


# The job's id in the job's script, expanded by its shell.
JOB_ID = "${DCT_JOB_ID}"


def shell_path(path: Path) -> str:
    """`path` quoted for the shell, with JOB_ID in it left to be expanded."""
    return shlex.quote(str(path)).replace(JOB_ID, "'\"" + JOB_ID + "\"'")


class DctoolkitJobEnvironment(job_environment.JobEnvironment):
    """Inside a dctoolkit job (the same as JOB_SIDE's: for code that asks submitit where it runs)."""

    _env: tp.ClassVar[dict[str, str]] = {
        "job_id": "DCT_JOB_ID",
        "num_tasks": "DCT_NTASKS",
        "num_nodes": "DCT_NNODES",
        "node": "DCT_NODEID",
        "global_rank": "DCT_GLOBALID",
        "local_rank": "DCT_LOCALID",
    }


class DctoolkitInfoWatcher(core.InfoWatcher):
    """Every registered job's state from one `dct status ID...` (submitit calls it at 0, 2, 4, 8 s ...)."""

    def __init__(self, delay_s: int = 60) -> None:
        super().__init__(delay_s)
        self._asked: list[str] = []

    def _make_command(self) -> list[str] | None:
        self._asked = sorted(self._registered - self._finished, key=int)
        return ["dct", "status", *self._asked] if self._asked else None

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        text = string.decode() if isinstance(string, bytes) else string
        words = text.split()
        if len(words) != len(self._asked):
            return {}
        return {
            job_id: {"State": STATES.get(word, "UNKNOWN"), "dct_state": word}
            for job_id, word in zip(self._asked, words, strict=True)
        }

    def get_state(self, job_id: str, mode: str = "standard") -> str:
        return self.get_info(job_id, mode=mode).get("State") or "UNKNOWN"


class DctoolkitJob(core.Job[core.R]):
    _cancel_command = "dct-cancel"
    watcher = DctoolkitInfoWatcher(delay_s=60)


class DctoolkitExecutor(core.PicklingExecutor):
    """Runs submitit's calls as dctoolkit jobs; `folder` (may hold %j) must be visible to the jobs."""

    job_class = DctoolkitJob

    def __init__(self, folder: str | Path, max_num_timeout: int = 3, python: str | None = None) -> None:
        super().__init__(folder, max_num_timeout=max_num_timeout)
        self.python = python or sys.executable
        self.parameters = {"cpus_per_task": 1}

    @classmethod
    def _valid_parameters(cls) -> set[str]:
        return {"name", "timeout_min", "mem_gb", "cpus_per_task", "gpus_per_node", "nodes", "tasks_per_node",
                "stderr_to_stdout", "labels", "python"}  # fmt: skip

    def _internal_update_parameters(self, **kwargs: tp.Any) -> None:
        unknown = sorted(set(kwargs) - self._valid_parameters())
        if unknown:
            raise ValueError(
                f"dctoolkit's executor has no parameter {', '.join(unknown)}; it takes "
                + ", ".join(sorted(self._valid_parameters()))
            )
        for key in ("nodes", "tasks_per_node"):
            if int(kwargs.get(key, 1)) != 1:
                raise ValueError(f"{key}={kwargs[key]}: a dctoolkit job is one task on one node; leave {key} at 1")
        if "python" in kwargs:
            self.python = str(kwargs.pop("python"))
        super()._internal_update_parameters(**kwargs)

    @property
    def _submitit_command_str(self) -> str:
        return " ".join([shlex.quote(self.python), "-u", "-c", shlex.quote(JOB_SIDE), shlex.quote(str(self.folder))])

    def _num_tasks(self) -> int:
        return 1

    def _make_submission_file_text(self, command: str, uid: str) -> str:
        paths = utils.JobPaths(self.folder, job_id=JOB_ID, task_id=0)
        out = shell_path(paths.stdout)
        err = out if self.parameters.get("stderr_to_stdout") else shell_path(paths.stderr)
        return "\n".join([
            "#!/bin/sh",
            "# a submitit job: its pickled call, its result and its logs are in the folder below",
            f"mkdir -p {shell_path(paths.folder)}",
            f"exec >{out} 2>{err}",
            "export SUBMITIT_EXECUTOR=dctoolkit",
            f"exec {command}",
            "",
        ])  # fmt: skip

    def _make_submission_command(self, submission_file_path: Path) -> list[str]:
        return ["dct", "submit", "--script", "--parsable", *self._flags(), str(submission_file_path)]

    def _flags(self) -> list[str]:
        p = self.parameters
        flags = ["--cpus", str(int(p.get("cpus_per_task", 1)))]
        if p.get("mem_gb"):
            flags += ["--memory", f"{math.ceil(float(p['mem_gb']) * 1024)}MB"]
        if p.get("gpus_per_node"):
            flags += ["--gpus", str(int(p["gpus_per_node"]))]
        if p.get("timeout_min"):
            flags += ["--time", f"{math.ceil(float(p['timeout_min']) * 60)}s"]
        flags += ["--name", str(p.get("name") or "submitit")]
        if p.get("labels"):
            flags += ["-a", f"labels={p['labels']}"]
        return flags

    @staticmethod
    def _get_job_id_from_submission_command(string: bytes | str) -> str:
        text = string.decode() if isinstance(string, bytes) else string
        lines = text.split()
        if len(lines) != 1 or not lines[0].isdigit():
            raise utils.FailedSubmissionError(f"dct submit --parsable printed {text!r}, not one job id")
        return lines[0]

    @classmethod
    def affinity(cls) -> int:
        return 0  # chosen by name only (cluster="dctoolkit"), never guessed
