"""The Celery task a node runs: check the attempt is still its own, then run the job."""

from __future__ import annotations

import logging
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from dctoolkit.fastsql import Compiled
from dctoolkit.nodes import agent

from . import cgroups, runner, sandbox, transitions, warm
from .dispatch import wake_scheduler_soon
from .models import Job, JobState, KillRequest, Submission

log = logging.getLogger(__name__)
# The job's row, read once per job; compiled once (see fastsql).
JOB_ROW = Compiled(lambda: Job.objects.filter(id=0))


@worker_ready.connect
def _on_worker_ready(sender, **kwargs) -> None:
    try:
        queues = list(sender.app.amqp.queues.consume_from)
        name = agent.node_name_from_queues(queues)
        slots = int(os.environ.get("DCT_NODE_SLOTS") or getattr(sender.controller, "concurrency", 0) or 0)
        identity = agent.start(name, slots or None)
        cgroups.for_node(identity.name, settings.DCT_CGROUPS)  # says now, in the node's log, whether it can
    except BaseException as exc:
        # A worker that is not a registered node must not take jobs: stop it.
        log.critical("node start-up failed: %s; stopping this worker", exc)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    log.info(
        "node %s ready: %d slots, sandbox %s%s",
        identity.name,
        identity.slots,
        "on" if identity.sandbox else "OFF",
        f" ({identity.sandbox_problem})" if identity.sandbox_problem else "",
    )


@worker_shutting_down.connect
def _on_worker_shutting_down(**kwargs) -> None:
    agent.stop()
    warm.close_pool()
    cgroups.close()


@shared_task(name="dctoolkit.run_job", acks_late=True, ignore_result=True)
def run_job(job_id: int, attempt: int) -> str:
    """Run attempt `attempt` of job `job_id` here, if it is still dispatched to this node."""
    close_old_connections()
    identity = agent.current
    if identity is None:
        raise RuntimeError("this worker is not a node: start it with worker_entry.py --node NAME")
    if not identity.accepts_jobs or not transitions.start(job_id, attempt, identity.name, timezone.now()):
        log.info("job %s attempt %s is no longer dispatched to %s: skipped", job_id, attempt, identity.name)
        return "skipped"
    (job,) = JOB_ROW.objects(job_id)
    try:
        state = execute(job, attempt, identity)
    except DatabaseError as exc:
        # The database went away mid-run: the attempt is the scheduler's to requeue.
        log.warning("job %s attempt %s: database unreachable (%s); left to the scheduler", job_id, attempt, exc)
        state = JobState.RUNNING
    except Exception as exc:
        log.exception("job %s attempt %s: internal error", job_id, attempt)
        transitions.finish(job_id, attempt, JobState.FAILED, timezone.now(), reason=f"internal error on node: {exc}")
        state = JobState.FAILED
    finally:
        wake_scheduler_soon()
    return str(state)


def execute(job: Job, attempt: int, identity: agent.NodeIdentity) -> JobState:
    """Stage, run, collect and record one attempt; returns the state it ended in."""
    folder = job.folder()
    folder.mkdir(parents=True, exist_ok=True)
    if job.network == "none" and not identity.sandbox:
        # Only the sandbox can cut a job off the network: running it would quietly break its promise.
        reason = (
            f"network = none needs the sandbox, which is off on {identity.name} ({identity.sandbox_problem}); "
            "submit it again pinned to a node whose sandbox is on (see './dct nodes')"
        )
        transitions.finish(job.id, attempt, JobState.FAILED, timezone.now(), reason=reason, sandboxed=False)
        return JobState.FAILED
    fence = job_fence(job, identity)
    scratch = Path(settings.DCT_SCRATCH) / identity.name
    warm_sandbox = None
    if fence and settings.DCT_WARM_SANDBOXES:
        warm_sandbox = warm.pool(scratch, identity.slots).take(job.owner_id, fence)
        workdir = warm_sandbox.folder
    else:
        workdir = scratch / f"job-{job.id}-{attempt}"
        if workdir.exists():
            shutil.rmtree(workdir)
    cgroup = cgroups.for_job(identity.name, job.id, attempt, job.request_memory_mb, settings.DCT_JOB_MAX_PIDS,
                             settings.DCT_CGROUPS)  # fmt: skip
    try:
        try:
            runner.stage_inputs(Submission(id=job.submission_id).folder(), job.inputs, workdir, job.executable)
        except OSError as exc:
            reason = f"could not stage input files: {exc}"
            transitions.finish(job.id, attempt, JobState.FAILED, timezone.now(), reason=reason)
            return JobState.FAILED
        before = runner.snapshot(workdir)
        spec = build_spec(job, workdir, replace(fence, workdir=str(workdir)) if fence else None)
        spec = replace(spec, cgroup=cgroup)
        result = runner.run(spec, lambda: _stop_request(job.id), warm_sandbox.start_job if warm_sandbox else None)
        outputs = folder / "outputs"
        if outputs.exists():
            shutil.rmtree(outputs)
        missing = runner.collect_outputs(workdir, before, job.output, outputs)
    finally:
        if cgroup:
            cgroup.remove()  # never raises: what is left is logged
        if warm_sandbox:
            warm_sandbox.clean = runner.empty_folder(workdir) and warm_sandbox.clean
            warm.pool(scratch, identity.slots).give_back(warm_sandbox)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return record(job, attempt, result, missing, sandboxed=identity.sandbox)


def job_fence(job: Job, identity: agent.NodeIdentity) -> sandbox.Fence | None:
    """How to fence `job` on this node (its folder not yet known), or None where the sandbox is off."""
    if not identity.sandbox:
        return None
    network = job.network or settings.DCT_DEFAULT_NETWORK
    return sandbox.Fence(
        workdir="",
        network=network != "none",
        container=job.container,
        extra_paths=sandbox.parse_sandbox_paths(settings.DCT_SANDBOX_PATHS),
        gpu_devices=job.request_gpus > 0,
        hidden=hidden_paths(),
    )


def build_spec(job: Job, workdir: Path, fence: sandbox.Fence | None) -> runner.RunSpec:
    inside = sandbox.inside_workdir(fence) if fence else str(workdir)
    executable = Path(job.executable).name
    if executable.endswith(".py"):
        python = "python3" if job.container else sandbox.python_executable()
        argv = [python, executable, *job.arguments]
    else:
        argv = [f"./{executable}", *job.arguments]
    extra = {
        "DCT_JOB_ID": str(job.id),
        "DCT_PROCESS": str(job.process),
        "DCT_ATTEMPT": str(job.attempts),
        "OMP_NUM_THREADS": str(job.request_cpus),
        "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in job.gpu_indices),
    }
    folder = job.folder()
    return runner.RunSpec(
        job_id=job.id,
        workdir=workdir,
        argv=argv,
        env=runner.build_env(job.environment, workdir=inside, extra=extra),
        stdout_path=folder / "stdout",
        stderr_path=folder / "stderr",
        max_runtime_seconds=job.max_runtime_seconds,
        memory_limit_mb=job.request_memory_mb,
        fence=fence,
    )


def hidden_paths() -> tuple[str, ...]:
    """Host folders no job may see: the project, var/, shared storage, scratch, the SQLite file's folder."""
    paths = [settings.BASE_DIR, settings.VAR_DIR, settings.DCT_STORAGE, settings.DCT_SCRATCH]
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and db["NAME"] != ":memory:":
        paths.append(Path(db["NAME"]).parent)
    return tuple(sorted({str(Path(p).resolve()) for p in paths}))


def _stop_request(job_id: int) -> str:
    if agent.shutting_down.is_set():
        return runner.StopReason.SHUTDOWN
    if agent.lost_contact():
        return runner.StopReason.LOST
    kill = Job.objects.filter(id=job_id).values_list("kill_requested", flat=True).first()
    return {KillRequest.CANCEL: runner.StopReason.CANCEL, KillRequest.HOLD: runner.StopReason.HOLD}.get(kill, "")


def record(job: Job, attempt: int, result: runner.RunResult, missing: list[str], sandboxed: bool) -> JobState:
    """Write one attempt's outcome to the database (conditional on the attempt)."""
    now = timezone.now()
    measured = dict(
        exit_code=result.exit_code,
        run_seconds=round(result.wall_seconds, 3),
        cpu_seconds=round(result.cpu_seconds, 3),
        max_rss_mb=result.max_rss_mb,
        sandboxed=sandboxed,
    )
    if result.stopped == runner.StopReason.SHUTDOWN:
        return transitions.requeue(job.id, attempt, "node shut down while the job ran", now) or JobState.QUEUED
    if result.stopped == runner.StopReason.LOST:
        # The database is out of reach; the scheduler requeues the attempt.
        log.warning("job %s attempt %s stopped: node %s lost contact", job.id, attempt, agent.current.name)
        return JobState.QUEUED
    if result.stopped == runner.StopReason.HOLD:
        return transitions.requeue(job.id, attempt, "held by its owner", now, hold=True) or JobState.HELD
    state, reason = outcome(job, result, missing)
    from dctoolkit.accounts.usage import charge_job

    # One transaction: the database's write lock is taken once per job end,
    # and a job is never recorded as ended without its charge.
    with transaction.atomic():
        if transitions.finish(job.id, attempt, state, now, reason=reason, **measured):
            charge_job(job.owner_id, job.request_cpus, result.wall_seconds, now)
    return state


def outcome(job: Job, result: runner.RunResult, missing: list[str]) -> tuple[JobState, str]:
    """The final state and the reason a person reads."""
    if result.error:
        return JobState.FAILED, result.error
    if result.stopped == runner.StopReason.CANCEL:
        return JobState.CANCELLED, "cancelled by its owner"
    if result.stopped == runner.StopReason.MAX_RUNTIME:
        return JobState.FAILED, f"killed: ran past max_runtime ({job.max_runtime_seconds:g}s)"
    if result.stopped == runner.StopReason.MEMORY:
        return JobState.FAILED, (
            f"killed: used more memory than request_memory ({job.request_memory_mb} MB); ask for more"
        )
    notes = f"; output not created: {', '.join(missing)}" if missing else ""
    if result.exit_code == 0:
        return JobState.SUCCEEDED, notes.lstrip("; ")
    if result.exit_code is not None and result.exit_code < 0:
        return JobState.FAILED, f"killed by signal {-result.exit_code}{notes}"
    return JobState.FAILED, f"exit status {result.exit_code}{notes}"
