"""Snakemake's jobs as dctoolkit jobs: `snakemake --executor dctoolkit --jobs N`.

Each job's script (Snakemake's jobscript: `cd` into the workflow's folder, then Snakemake itself for
that one job) is submitted through `dctoolkit.client.Client`: to the server when DCT_SERVER and
DCT_TOKEN are set (or `--dctoolkit-server`), else to this machine's own dctoolkit, as `dct` does.
Resources map onto requests (dctoolkit.client.workflow.snakemake_requests): `cpus_per_task` or
`threads` -> request_cpus, `mem_mb` -> request_memory, `runtime` (minutes) -> max_runtime, `gpu` ->
request_gpus (`gpu_model` -> gpu_type).  Every poll asks for all the workflow's running jobs at once
(one `GET /api/jobs/?id=...`); Ctrl-C cancels them.

The token is read from DCT_TOKEN only, never from a command-line option, so it appears in no process
list and no job script.  The jobs need the workflow's folder (read-write) and Snakemake's Python on
the node: a folder granted to the user, or DCT_SANDBOX_PATHS, and Snakemake installed there.
"""

import asyncio
import shlex
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from dctoolkit.client import Client, ClientError
from dctoolkit.client.workflow import snakemake_requests

# dctoolkit's final states, and those Snakemake counts as an error.
SUCCEEDED = "succeeded"
FAILED_STATES = ("failed", "cancelled")


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    # Optional[...], not `str | None`: Snakemake hands the annotation to argparse as the option's type.
    server: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={
            "help": "the dctoolkit server's address, such as https://dct.lab.example (default: DCT_SERVER; "
            "neither: this machine's own dctoolkit). The token is DCT_TOKEN's."
        },
    )


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,  # the jobs run in the workflow's own folder (granted to them)
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=1,
)


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        self.client = Client(server=self.workflow.executor_settings.server)
        # Every job submitted and not yet seen to end.  Snakemake's own list of active jobs is empty while a
        # poll runs, and a Ctrl-C then would cancel nothing: cancel_jobs cancels these too.
        self.unfinished: set[int] = set()
        self.unfinished_lock = threading.Lock()

    def run_job(self, job: JobExecutorInterface) -> None:
        jobscript = self.get_jobscript(job)
        self.write_jobscript(job, jobscript)
        script = Path(jobscript)
        requests = snakemake_requests(f"smk.{job.name}", job.threads, dict(job.resources.items()))
        info = SubmittedJobInfo(job, aux={"jobscript": jobscript})
        try:
            (row,) = self.client.submit(requests.submission(script.name), files={script.name: script})
        except ClientError as exc:
            self.report_job_error(info, msg=f"dctoolkit refused the job: {exc}\n")
            return
        info.external_jobid = str(row["id"])
        with self.unfinished_lock:
            self.unfinished.add(row["id"])
        self.logger.info(f"Submitted job {job.jobid} as dctoolkit job {row['id']}.")
        self.report_job_submission(info)

    async def check_active_jobs(self, active_jobs: list[SubmittedJobInfo]) -> AsyncGenerator[SubmittedJobInfo, None]:
        async with self.status_rate_limiter:
            try:
                # In a thread: this runs in Snakemake's event loop, where Django (the local client) refuses to
                # query, and a request to the server would hold the loop.
                ids = [int(info.external_jobid) for info in active_jobs]
                found = await asyncio.to_thread(self.client.jobs, ids)
            except ClientError as exc:  # the server is away for a moment: ask again next time
                self.logger.warning(f"dctoolkit did not answer ({exc}); asking again")
                for info in active_jobs:
                    yield info
                return
        for info in active_jobs:
            job = found.get(int(info.external_jobid))
            if job is None or job["state"] in (SUCCEEDED, *FAILED_STATES):
                with self.unfinished_lock:
                    self.unfinished.discard(int(info.external_jobid))
            if job is None:
                self.report_job_error(info, msg=f"dctoolkit has no job {info.external_jobid} of yours any more.\n")
            elif job["state"] == SUCCEEDED:
                self.report_job_success(info)
            elif job["state"] in FAILED_STATES:
                self.report_job_error(info, msg=ending(job))
            else:
                yield info

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        with self.unfinished_lock:
            ids = self.unfinished | {int(info.external_jobid) for info in active_jobs if info.external_jobid}
        for job_id in sorted(ids):
            try:
                self.client.cancel(job_id)
            except ClientError:
                pass  # it ended meanwhile

    def get_job_exec_prefix(self, job: JobExecutorInterface) -> str:
        # A dctoolkit job starts in a folder of its own: Snakemake's job runs in the workflow's.
        return f"cd {shlex.quote(self.workflow.workdir_init)}"


def ending(job: dict) -> str:
    """What Snakemake prints about a dctoolkit job that failed or was cancelled."""
    said = job.get("reason") or (f"exit status {job['exit_code']}" if job.get("exit_code") is not None else "")
    return (
        f"dctoolkit job {job['id']} ended {job['state']}" + (f" ({said})" if said else "")
        + f"; 'dct logs {job['id']} --stderr' shows what it said.\n"
    )  # fmt: skip
