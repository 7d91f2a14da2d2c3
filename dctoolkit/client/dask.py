"""dask-jobqueue on dctoolkit: `DCTCluster`, a JobQueueCluster whose Dask workers are dctoolkit jobs.

    from dask.distributed import Client
    from dctoolkit.client.dask import DCTCluster

    cluster = DCTCluster(cores=2, memory="4GB", walltime="1h")
    cluster.scale(jobs=4)              # four jobs, each one Dask worker
    client = Client(cluster)
    ...
    cluster.close()                     # cancels the jobs

Each worker's job script is submitted with `dct submit --script --parsable --cpus N --memory M [--time T]
--name NAME` (whatever `dct` on PATH talks to: this machine's dctoolkit, or DCT_SERVER) and cancelled
with `dct-cancel ID`, as dask-jobqueue runs sbatch and scancel.  `cluster.job_script()` shows the
script.  As with every dask-jobqueue cluster, the worker runs `python` (default: this Python) on the
node, so that Python must be there at the same path (DCT_SANDBOX_PATHS, or a folder granted to you),
and the node must reach this machine's scheduler (a job's `network` is the node's by default).

Options besides dask-jobqueue's own (cores, memory, processes, python, name, walltime,
job_script_prologue, worker_extra_args, ...): `labels` (nodes with these labels, `labels = ...`),
`job_extra_directives` (more submission keys, each `KEY=VALUE`, as `dct submit -a`).  Defaults come
from Dask's configuration, `jobqueue.dctoolkit.*`, as for the other clusters.

This is the one module of dctoolkit that imports dask (and it is not imported by `dctoolkit.client`):
install dask-jobqueue where you use it, as requirements-tools.txt pins it.
"""

from __future__ import annotations

import math
import shlex
from typing import Any

import dask
from dask_jobqueue.core import Job, JobQueueCluster, cluster_parameters, job_parameters

from dctoolkit.client.workflow import dct_time

CONFIG_NAME = "dctoolkit"
# jobqueue.dctoolkit.*, as dask-jobqueue's own jobqueue.yaml gives every other cluster its keys.
DEFAULTS: dict[str, Any] = {
    "name": "dask-worker",
    "cores": None,
    "memory": None,
    "processes": None,
    "python": None,
    "interface": None,
    "death-timeout": 60,
    "local-directory": None,
    "shared-temp-directory": None,
    "extra": None,
    "worker-command": "distributed.cli.dask_worker",
    "worker-extra-args": [],
    "shebang": "#!/bin/sh",
    "walltime": None,
    "labels": None,
    "env-extra": None,
    "job-script-prologue": [],
    "job-extra": None,
    "job-extra-directives": [],
    "job-directives-skip": [],
    "log-directory": None,
    "scheduler-options": {},
}
dask.config.update_defaults({"jobqueue": {CONFIG_NAME: DEFAULTS}})


class DCTJob(Job):
    """One Dask worker as one dctoolkit job."""

    submit_command = "dct submit --script --parsable"
    cancel_command = "dct-cancel"
    config_name = CONFIG_NAME

    def __init__(
        self,
        scheduler: Any = None,
        name: str | None = None,
        walltime: str | None = None,
        labels: str | None = None,
        config_name: str | None = None,
        **base_class_kwargs: Any,
    ) -> None:
        super().__init__(scheduler=scheduler, name=name, config_name=config_name, **base_class_kwargs)
        if walltime is None:
            walltime = dask.config.get(f"jobqueue.{self.config_name}.walltime", None)
        if labels is None:
            labels = dask.config.get(f"jobqueue.{self.config_name}.labels", None)
        flags = ["--cpus", str(self.worker_cores)]
        if self.worker_memory:
            flags += ["--memory", f"{math.ceil(self.worker_memory / 2**20)}MB"]
        if walltime:
            flags += ["--time", dct_time(str(walltime))]
        if self.job_name:
            flags += ["--name", self.job_name]
        if labels:
            flags += ["-a", f"labels={labels}"]
        for directive in self.job_extra_directives:
            if not any(skip in directive for skip in self.job_directives_skip):
                flags += ["-a", directive]
        # An instance's own command: the requests travel as dct's flags (no header in the script).
        self.submit_command = f"{DCTJob.submit_command} {shlex.join(flags)}"
        self.job_header = f"# submitted with: {self.submit_command} SCRIPT"


class DCTCluster(JobQueueCluster):
    __doc__ = f"""Launch Dask workers as dctoolkit jobs (see the module's text).

    Parameters
    ----------
    walltime : str
        Each worker job's wall-time limit: 1h, 90m, or Slurm's 01:30:00 (`--time`).
    labels : str
        Run on nodes with these labels, comma-separated (the `labels` key).
    job_extra_directives : list[str]
        More submission keys, each KEY=VALUE (`dct submit -a KEY=VALUE`), such as "request_gpus=1".
{job_parameters}
{cluster_parameters}
    """
    job_cls = DCTJob
