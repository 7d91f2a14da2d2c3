"""The Celery task a node runs: check the attempt is still its own, then run the job."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from dctoolkit.fastsql import Compiled
from dctoolkit.nodes import agent

from . import cgroups, runner, sandbox, transitions, usernet, warm, workfiles
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
        _check_private_network(name)
        # mypy: the int default is meant: int() reads the environment's text or the pool's number.
        slots = int(os.environ.get("DCT_NODE_SLOTS") or getattr(sender.controller, "concurrency", 0) or 0)  # type: ignore[arg-type]
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


def _check_private_network(name: str) -> None:
    """Say in the log whether `network = private` works here; refuse to start when it is the default and does not.

    Refused rather than failing every job that did not choose a network: the
    fault is the node's configuration, and its operator is the one to fix it.
    """
    ok, what = usernet.probe()
    if ok:
        log.info("node %s: network = private works here (through %s)", name, what)
    elif settings.DCT_DEFAULT_NETWORK == "private":
        raise RuntimeError(
            f"DCT_DEFAULT_NETWORK=private, but a private network cannot work on {name}: {what}; "
            "fix that, or set DCT_DEFAULT_NETWORK to host or none"
        )
    else:
        log.warning("node %s: network = private cannot work here (%s); jobs that ask for it fail", name, what)


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
    """Stage, run, collect and record one attempt; returns the state it ended in.

    Whatever happens after the job's folder is made, it is removed (a warm
    sandbox's is emptied, and the sandbox given back or retired) before the
    attempt is recorded.
    """
    folder = job.folder()
    folder.mkdir(parents=True, exist_ok=True)
    reason = network_problem(job.network or settings.DCT_DEFAULT_NETWORK, identity)
    if reason:
        transitions.finish(job.id, attempt, JobState.FAILED, timezone.now(), reason=reason, sandboxed=False)
        return JobState.FAILED
    fence = job_fence(job, identity)
    scratch = Path(settings.DCT_SCRATCH) / identity.name
    warm_sandbox = None
    if fence and settings.DCT_WARM_SANDBOXES and warm.can_serve(fence):
        warm_sandbox = _empty_warm_sandbox(warm.pool(scratch, identity.slots), job.owner_id, fence)
        workdir = warm_sandbox.folder
    else:
        workdir = scratch / f"job-{job.id}-{attempt}"
    cgroup = cgroups.for_job(identity.name, job.id, attempt, job.request_memory_mb, settings.DCT_JOB_MAX_PIDS,
                             settings.DCT_CGROUPS)  # fmt: skip
    try:
        ran = _stage_run_collect(job, workdir, fence, warm_sandbox, cgroup)
    finally:
        if cgroup:
            cgroup.remove()  # never raises: what is left is logged
        _clean_up(workdir, warm_sandbox, scratch, identity.slots)
    if isinstance(ran, str):
        transitions.finish(job.id, attempt, JobState.FAILED, timezone.now(), reason=ran)
        return JobState.FAILED
    result, collected = ran
    return record(job, attempt, result, collected.missing, sandboxed=identity.sandbox, notes=collected.notes)


def _empty_warm_sandbox(pool: warm.WarmPool, owner: int, fence: sandbox.Fence) -> warm.WarmSandbox:
    """A warm sandbox for `owner` whose folder is empty.

    A folder that is not empty before staging holds what no job of ours left
    there (the node emptied it after the last job): a process of an earlier
    job outlived it, say a zygote taken over, and may plant links for the
    node to follow.  That sandbox is retired and the next one taken; at
    worst a newly made one, which only the node has touched.
    """
    for _ in range(pool.keep + 2):  # each idle one at most once, then a new one
        box = pool.take(owner, fence)
        try:
            if workfiles.is_empty(box.folder):
                return box
            problem = "its folder was not empty before staging"
        except OSError as exc:
            problem = f"its folder could not be read ({exc})"
        log.warning("warm sandbox %s: %s; retiring it", box.folder.name, problem)
        box.kill()  # so that give_back retires it
        pool.give_back(box)
    raise RuntimeError(f"no warm sandbox with an empty folder after {pool.keep + 2} tries; see the node's log")


def _stage_run_collect(
    job: Job,
    workdir: Path,
    fence: sandbox.Fence | None,
    warm_sandbox: warm.WarmSandbox | None,
    cgroup: cgroups.JobCgroup | None = None,
) -> tuple[runner.RunResult, workfiles.Collected] | str:
    """Run the job in `workdir`: (its result, what was collected), or why it could not be staged."""
    if not warm_sandbox and not workfiles.remove_tree(workdir):
        return f"could not stage input files: an earlier attempt's folder {workdir} could not be removed"
    try:
        workfiles.stage_inputs(Submission(id=job.submission_id).folder(), job.inputs, workdir, job.executable)
    except OSError as exc:
        if warm_sandbox and isinstance(exc, FileExistsError):
            # A name appeared in the emptied folder while the node staged: something in the sandbox races
            # the node.  Not retried (it would race again); the sandbox is retired.
            warm_sandbox.kill()
        return f"could not stage input files: {exc}"
    before = workfiles.snapshot(workdir)
    spec = build_spec(job, workdir, replace(fence, workdir=str(workdir)) if fence else None)
    spec = replace(spec, cgroup=cgroup)
    result = runner.run(spec, lambda: _stop_request(job.id), warm_sandbox.start_job if warm_sandbox else None)
    try:
        collected = _collect(job, workdir, before)
    except Exception as exc:  # the job is told, and the worker goes on with the next one
        log.exception("job %s: collecting its outputs failed", job.id)
        failed = replace(result, error=result.error or f"could not collect its output files: {exc}")
        return failed, workfiles.Collected(missing=[], notes=[])
    if collected.over_budget_at and not result.error:
        result = replace(result, error=over_output_cap_reason(settings.DCT_MAX_OUTPUT_MB, collected.over_budget_at))
    return result, collected


def _collect(job: Job, workdir: Path, before: dict[str, int]) -> workfiles.Collected:
    outputs = job.folder() / "outputs"
    if not workfiles.remove_tree(outputs):
        raise OSError(f"the outputs of an earlier attempt in {outputs} could not be removed")
    return workfiles.collect_outputs(workdir, before, job.output, outputs, settings.DCT_MAX_OUTPUT_MB << 20)


def over_output_cap_reason(cap_mb: int, stopped_at: str) -> str:
    """Why a job whose outputs passed DCT_MAX_OUTPUT_MB failed, and what to do about it."""
    return (
        f"outputs exceed DCT_MAX_OUTPUT_MB ({cap_mb} MB): collection stopped at {stopped_at} and kept only "
        "the files before it; write less, name only the files you need in output (transfer_output_files), "
        "or ask the operator to raise DCT_MAX_OUTPUT_MB on the node"
    )


def _clean_up(workdir: Path, warm_sandbox: warm.WarmSandbox | None, scratch: Path, slots: int) -> None:
    """A warm sandbox's folder emptied and the sandbox given back (retired unless clean), or the folder removed."""
    if warm_sandbox is None:
        if not workfiles.remove_tree(workdir):
            log.warning("job folder %s could not be removed", workdir)
        return
    warm_sandbox.clean = workfiles.empty_folder(workdir) and warm_sandbox.clean
    warm.pool(scratch, slots).give_back(warm_sandbox)


def network_problem(network: str, identity: agent.NodeIdentity) -> str:
    """Why a job with this network cannot run on this node ("" when it can).

    Only the sandbox can cut a job off the host's network: running it on the
    host's would quietly break its promise.
    """
    if network == "host":
        return ""
    if not identity.sandbox:
        return (
            f"network = {network} needs the sandbox, which is off on {identity.name} ({identity.sandbox_problem}); "
            "submit it again pinned to a node whose sandbox is on (see './dct nodes')"
        )
    ok, why = usernet.probe() if network == "private" else (True, "")
    if not ok:
        return (
            f"network = private cannot work on {identity.name}: {why}; "
            "submit it again with network = host or none, or pinned to another node (see './dct nodes')"
        )
    return ""


def job_fence(job: Job, identity: agent.NodeIdentity) -> sandbox.Fence | None:
    """How to fence `job` on this node (its folder not yet known), or None where the sandbox is off."""
    if not identity.sandbox:
        return None
    network = job.network or settings.DCT_DEFAULT_NETWORK
    return sandbox.Fence(
        workdir="",
        network=network,
        container=job.container,
        extra_paths=sandbox.parse_sandbox_paths(settings.DCT_SANDBOX_PATHS),
        # Part of the fence, so that a warm sandbox only ever serves jobs on the same GPUs.
        gpu_indices=tuple(i for i in job.gpu_indices if isinstance(i, int)) if job.request_gpus > 0 else (),
        hidden=hidden_paths(),
    )


def build_spec(job: Job, workdir: Path, fence: sandbox.Fence | None) -> runner.RunSpec:
    """How to run `job` in `workdir`; a job whose stored environment or arguments may not be used gets a
    `refusal`, and runner.run fails it with that reason before anything starts."""
    offered = agent.current.containers if agent.current else []
    refusal = runner.start_refusal(job.environment, job.arguments) or container_refusal(job.container, offered)
    environment, arguments = ({}, []) if refusal else (job.environment, list(job.arguments))
    inside = sandbox.inside_workdir(fence) if fence else str(workdir)
    executable = Path(job.executable).name
    if executable.endswith(".py"):
        python = "python3" if job.container else sandbox.python_executable()
        argv = [python, executable, *arguments]
    else:
        argv = [f"./{executable}", *arguments]
    extra = {
        "DCT_JOB_ID": str(job.id),
        "DCT_PROCESS": str(job.process),
        "DCT_ATTEMPT": str(job.attempts),
        "OMP_NUM_THREADS": str(job.request_cpus),
        "CUDA_VISIBLE_DEVICES": cuda_visible_devices(job.gpu_indices, fence),
    }
    folder = job.folder()
    return runner.RunSpec(
        job_id=job.id,
        workdir=workdir,
        argv=argv,
        env=runner.build_env(environment, workdir=inside, extra=extra),
        stdout_path=folder / "stdout",
        stderr_path=folder / "stderr",
        max_runtime_seconds=job.max_runtime_seconds,
        memory_limit_mb=job.request_memory_mb,
        fence=fence,
        refusal=refusal,
    )


def container_refusal(container: str, offered: list[str]) -> str:
    """Why a stored `container =` must not be used here ("" when it may): only a root this node offers.

    The submission checks it against every node's list; the node checks its own again, for a row it did not
    check, since any other folder (say `/`) would become the job's root with nothing of the host covered.
    """
    if not container or container in offered:
        return ""
    return (
        f"not started: container {container} is not offered by this node (it offers: {', '.join(offered) or 'none'}); "
        "submit it again with a container './dct nodes' lists"
    )


def cuda_visible_devices(gpu_indices: list[int], fence: sandbox.Fence | None) -> str:
    """CUDA_VISIBLE_DEVICES for a job on the node's GPUs `gpu_indices`.

    Unfenced, the job sees every GPU and picks its own by their numbers.  In
    the sandbox only its own /dev/nvidiaN are there, and CUDA numbers the
    devices it can open from 0 (as under Slurm's ConstrainDevices): the job's
    GPUs are 0 to N-1.
    """
    if fence is None:
        return ",".join(str(i) for i in gpu_indices)
    return ",".join(str(n) for n in range(len(fence.gpu_indices)))


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
    # mypy: kill_requested is None when nothing was asked; .get(None, '') gives ''.
    return {KillRequest.CANCEL: runner.StopReason.CANCEL, KillRequest.HOLD: runner.StopReason.HOLD}.get(kill, "")  # type: ignore[call-overload]


def record(
    job: Job, attempt: int, result: runner.RunResult, missing: list[str], sandboxed: bool, notes: Sequence[str] = ()
) -> JobState:
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
        # mypy: the task runs only in a started node worker, where `current` is set.
        log.warning("job %s attempt %s stopped: node %s lost contact", job.id, attempt, agent.current.name)  # type: ignore[union-attr]
        return JobState.QUEUED
    if result.stopped == runner.StopReason.HOLD:
        return transitions.requeue(job.id, attempt, "held by its owner", now, hold=True) or JobState.HELD
    state, reason = outcome(job, result, missing, notes)
    from dctoolkit.accounts.usage import charge_job

    # One transaction: the database's write lock is taken once per job end,
    # and a job is never recorded as ended without its charge.
    with transaction.atomic():
        if transitions.finish(job.id, attempt, state, now, reason=reason, **measured):
            charge_job(job.owner_id, job.request_cpus, result.wall_seconds, now)
    return state


def outcome(job: Job, result: runner.RunResult, missing: list[str], notes: Sequence[str] = ()) -> tuple[JobState, str]:
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
    notes = (f"; output not created: {', '.join(missing)}" if missing else "") + "".join(f"; {n}" for n in notes)
    if result.exit_code == 0:
        return JobState.SUCCEEDED, notes.lstrip("; ")
    if result.exit_code is not None and result.exit_code < 0:
        return JobState.FAILED, f"killed by signal {-result.exit_code}{notes}"
    return JobState.FAILED, f"exit status {result.exit_code}{notes}"
