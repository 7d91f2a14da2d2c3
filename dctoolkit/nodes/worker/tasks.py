"""The Celery task a node runs: check the attempt is still its own, then run the job."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from dctoolkit.accounts.granting import folders_of, hidden_folders
from dctoolkit.accounts.grants import (
    GrantedFolder,
    GrantPathError,
    check_grantable,
    granted_folder_for,
    not_granted_message,
)
from dctoolkit.celery import app
from dctoolkit.jobs import eventlog, jobenv, jobpolicy, policyfacts, streams, transitions
from dctoolkit.jobs.models import Job, JobState, KillRequest, Submission
from dctoolkit.jobs.retries import RetryPolicy, judge_exit
from dctoolkit.jobs.scheduling.wake import wake_scheduler_soon
from dctoolkit.lib.fastsql import retry_if_gone, reuse_connection, update_rows
from dctoolkit.nodes.worker import agent, cgroups, cpus, desktop, runner, sandbox, usernet, warm, workfiles

log = logging.getLogger(__name__)


@worker_ready.connect
def _on_worker_ready(sender, **kwargs) -> None:
    try:
        queues = list(sender.app.amqp.queues.consume_from)
        name = agent.node_name_from_queues(queues)
        _check_private_network(name)
        # One message per slot (prefetch 1): the slots a node offers are its pool's threads,
        # worker_entry.py --slots or CELERY_WORKER_CONCURRENCY (DCT_NODE_SLOTS, settings.py).
        slots = int(getattr(sender.controller, "concurrency", 0) or 0)
        # Before the node registers: its first heartbeat says how it limits jobs (cgroups.enforcement).
        cgroups.for_node(name, settings.DCT_CGROUPS)  # says now, in the node's log, whether it can
        cpus.pool()  # the cores jobs are pinned to: this worker's, taken before any job runs
        identity = agent.start(name, slots or None)
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


@app.task(name="dctoolkit.run_job", acks_late=True, ignore_result=True)
def run_job(job_id: int, attempt: int, request_cpus: int | None = None) -> str:
    """Run attempt `attempt` of job `job_id` here, if it is still dispatched to this node.

    `request_cpus`: the job's, as the scheduler claimed it (a message of an
    older scheduler has none): the cores are taken before the start, which
    records them and reads the job's row in the same statement.
    """
    # No `SELECT 1` before each job: a dead kept connection fails the first statement, which is sent again.
    reuse_connection()
    identity = agent.current
    if identity is None:
        raise RuntimeError("this worker is not a node: start it with worker_entry.py --node NAME")
    if not identity.accepts_jobs:
        log.info("job %s attempt %s: %s takes no jobs now: skipped", job_id, attempt, identity.name)
        return "skipped"
    if request_cpus is None:  # the row first, for its cpus
        (job,) = retry_if_gone(lambda: transitions.JOB_ROW.objects(job_id)) or (None,)
        request_cpus = job.request_cpus if job else 1
    cores = cpus.pool().take(request_cpus)
    try:
        now = timezone.now()
        job = _start(job_id, attempt, identity.name, now, cores)
        if job is None:
            log.info("job %s attempt %s is no longer dispatched to %s: skipped", job_id, attempt, identity.name)
            return "skipped"
        if job.request_cpus != request_cpus:  # not the size it was claimed with (never seen): pinned again
            cpus.pool().give_back(cores)
            cores = cpus.pool().take(job.request_cpus)
            update_rows(Job, {"id": job_id, "attempts": attempt}, {"cpu_indices": list(cores)})
            job.cpu_indices = list(cores)
        return _run_on(job, attempt, identity)
    finally:
        cpus.pool().give_back(cores)


def _start(job_id: int, attempt: int, node: str, now: datetime, cores: tuple[int, ...]) -> Job | None:
    """The job's row as it started here, or None when its attempt is no longer this node's to start."""
    tries = iter((False, True))  # sent again on a new connection, the start it may have made counts
    return retry_if_gone(lambda: transitions.start_and_read(job_id, attempt, node, now, cores, again=next(tries)))


def _run_on(job: Job, attempt: int, identity: agent.NodeIdentity) -> str:
    job_id = job.id
    _log_event(job, lambda c, p, now: eventlog.executing(c, p, now, identity.name))
    state = JobState.RUNNING
    woken: list[bool] = []

    def ended() -> None:  # the scheduler is woken once a job, as soon as its end is recorded
        if not woken:
            woken.append(True)
            wake_scheduler_soon()

    try:
        state = execute(job, attempt, identity, ended)
    except DatabaseError as exc:
        # The database went away mid-run: the attempt is the scheduler's to requeue.
        log.warning("job %s attempt %s: database unreachable (%s); left to the scheduler", job_id, attempt, exc)
        state = JobState.RUNNING
    except Exception as exc:
        log.exception("job %s attempt %s: internal error", job_id, attempt)
        transitions.finish(job_id, attempt, JobState.FAILED, timezone.now(), reason=f"internal error on node: {exc}")
        state = JobState.FAILED
    finally:
        ended()
        if state != JobState.RUNNING:
            _log_end(job, attempt)
    return str(state)


def _log_event(job: Job, event: Callable[[int, int, datetime], str]) -> None:
    """Add an event to the submission's HTCondor event log, when its file asked for one (`log = NAME`)."""
    folder = Submission(id=job.submission_id).folder()
    if not streams.of(job).log:
        return
    try:
        eventlog.append(folder, event(job.submission_id, job.process, timezone.now()))
    except OSError as exc:  # the job's run does not depend on its log
        log.warning("job %s: could not write its event log: %s", job.id, exc)


def _log_end(job: Job, attempt: int) -> None:
    if not streams.of(job).log:  # no event log asked for: no read of the row
        return
    fields = ("state", "exit_code", "reason", "cpu_seconds", "hold_code", "hold_subcode")
    row = Job.objects.filter(id=job.id, attempts=attempt).values(*fields).first()
    if row:
        hold = (row["hold_code"] or 1, row["hold_subcode"] or 0)
        _log_event(
            job,
            lambda c, p, now: eventlog.ended(
                c, p, now, row["state"], row["exit_code"], row["reason"], row["cpu_seconds"] or 0.0, hold
            ),
        )


def execute(
    job: Job, attempt: int, identity: agent.NodeIdentity, ended: Callable[[], None] = wake_scheduler_soon
) -> JobState:
    """Stage, run, collect and record one attempt; returns the state it ended in.

    Whatever happens after the job's folder is made, it is removed (a warm
    sandbox's is emptied) before the attempt is recorded; `ended()` (the
    scheduler's wake-up) is called then, and the job's cgroup is removed and
    a warm sandbox given back (its next job's stub asked for: mkdir in the
    cgroup filesystem, about a millisecond) after it, off the job's latency.
    Nothing of the job runs by then: runner.run killed what was left in its
    cgroup, and a warm sandbox's zygote what was left in it.
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
    # CPU time for as many cores as it was pinned to: its request, or all the worker has where it asked for more.
    # A warm sandbox's stub is already in a spare cgroup: that one becomes the job's (cgroups.py says why).
    spare = warm_sandbox.take_stub() if warm_sandbox else None
    cgroup = cgroups.for_job(identity.name, job.id, attempt, job.request_memory_mb, settings.DCT_JOB_MAX_PIDS,
                             settings.DCT_CGROUPS, cpus=len(job.cpu_indices) or job.request_cpus,
                             spare=spare)  # fmt: skip
    try:
        try:
            ran = _stage_run_collect(job, workdir, fence, warm_sandbox, cgroup)
        finally:
            _empty_workdir(workdir, warm_sandbox)
        if isinstance(ran, str):
            transitions.finish(job.id, attempt, JobState.FAILED, timezone.now(), reason=ran)
            return JobState.FAILED
        result, collected = ran
        return record(
            job, attempt, result, collected.missing, sandboxed=identity.sandbox, notes=collected.notes,
            node=identity.name,
        )  # fmt: skip
    finally:
        ended()  # its slot is free for the scheduler's next pass now, not after the clean-up
        if cgroup:
            cgroup.remove()  # never raises: what is left is logged
        if warm_sandbox is not None:
            node_cgroups = cgroups.for_node(identity.name, settings.DCT_CGROUPS)
            warm.pool(scratch, identity.slots).give_back(warm_sandbox, node_cgroups)


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
    start = warm_sandbox.start_job if warm_sandbox else None
    result = runner.run(spec, lambda: _stop_request(job.id), start, desktop_pause(job.id, job.attempts))
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
    return workfiles.collect_outputs(
        workdir, before, job.output, outputs, settings.DCT_MAX_OUTPUT_MB << 20, job.output_remaps or None
    )


def over_output_cap_reason(cap_mb: int, stopped_at: str) -> str:
    """Why a job whose outputs passed DCT_MAX_OUTPUT_MB failed, and what to do about it."""
    return (
        f"outputs exceed DCT_MAX_OUTPUT_MB ({cap_mb} MB): collection stopped at {stopped_at} and kept only "
        "the files before it; write less, name only the files you need in output (transfer_output_files), "
        "or ask the operator to raise DCT_MAX_OUTPUT_MB on the node"
    )


def _empty_workdir(workdir: Path, warm_sandbox: warm.WarmSandbox | None) -> None:
    """A warm sandbox's folder emptied (the sandbox is retired when given back unless all of it went), or the
    job's own folder removed."""
    if warm_sandbox is None:
        if not workfiles.remove_tree(workdir):
            log.warning("job folder %s could not be removed", workdir)
        return
    warm_sandbox.clean = workfiles.empty_folder(workdir) and warm_sandbox.clean


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
    hidden = hidden_paths()
    return sandbox.Fence(
        workdir="",
        network=network,
        container=job.container,
        extra_paths=sandbox.parse_sandbox_paths(settings.DCT_SANDBOX_PATHS),
        # Part of the fence, so that a warm sandbox only ever serves jobs on the same GPUs.
        gpu_indices=tuple(i for i in job.gpu_indices if isinstance(i, int)) if job.request_gpus > 0 else (),
        hidden=hidden,
        granted=granted_paths(job.owner_id, hidden, job.granted_at_start),
    )


def granted_paths(
    owner_id: int, hidden: tuple[str, ...], read: tuple[GrantedFolder, ...] | None = None
) -> tuple[sandbox.ExtraPath, ...]:
    """The folders granted to the job's owner as the job starts (a revoked grant is gone here; `read`: as the
    start's statement read them), less any that may not be bound (a row written past the checks, a folder
    gone or now reached through a link)."""
    usable = []
    for folder in folders_of(owner_id) if read is None else read:
        try:
            check_grantable(folder.path, hidden)
            problem = sandbox.granted_problem(folder.path)
        except GrantPathError as exc:
            problem = str(exc)
        if problem:
            log.warning("user %s: granted folder left out: %s", owner_id, problem)
            continue
        usable.append(sandbox.ExtraPath(folder.path, writable=folder.writable))
    return tuple(usable)


def chdir_refusal(job: Job, chdir: str, fence: sandbox.Fence | None) -> str:
    """Why `job` may not start in the host folder `chdir` (an absolute initialdir) here ("" when it may)."""
    if not chdir:
        return ""
    if fence is None:
        node = agent.current.name if agent.current else "this node"
        return (
            f"not started: initialdir = {chdir}: a granted folder is bound into the job's sandbox, which is off "
            f"on {node}; submit it again pinned to a node whose sandbox is on (see './dct nodes')"
        )
    if granted_folder_for(chdir, [GrantedFolder(g.path, g.writable) for g in fence.granted]) is None:
        return f"not started: {not_granted_message(chdir, job.owner.get_username())} (checked again as it starts)"
    return ""


def build_spec(job: Job, workdir: Path, fence: sandbox.Fence | None) -> runner.RunSpec:
    """How to run `job` in `workdir`; a job whose stored environment or arguments may not be used gets a
    `refusal`, and runner.run fails it with that reason before anything starts."""
    offered = agent.current.containers if agent.current else []
    names = streams.of(job)
    refusal = (
        runner.start_refusal(job.environment, job.arguments)
        or container_refusal(job.container, offered)
        or chdir_refusal(job, names.chdir, fence)
    )
    environment, arguments = ({}, []) if refusal else (job.environment, list(job.arguments))
    inside = sandbox.inside_workdir(fence) if fence else str(workdir)
    executable = Path(job.executable).name
    # Started elsewhere (a granted folder), the job finds its program in its own folder by its full path.
    program = f"{inside}/{executable}" if names.chdir else f"./{executable}"
    if executable.endswith(".py"):
        python = "python3" if job.container else sandbox.python_executable()
        argv = [python, program.removeprefix("./"), *arguments]
    else:
        argv = [program, *arguments]
    extra = {
        "DCT_JOB_ID": str(job.id),
        "DCT_PROCESS": str(job.process),
        "DCT_ATTEMPT": str(job.attempts),
        "OMP_NUM_THREADS": str(job.request_cpus),
        "CUDA_VISIBLE_DEVICES": cuda_visible_devices(job.gpu_indices, fence),
    }
    # A Slurm or PBS script's SLURM_JOB_ID, SLURMD_NODENAME, ... (set empty at submission: only the node knows them).
    node_name = agent.current.name if agent.current else ""
    environment = jobenv.fill_runtime(environment, job_id=job.id, node=node_name, workdir=inside)
    folder = job.folder()
    stdin = names.stdin
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
        stdin_path=workdir / stdin if stdin else None,
        cwd=names.chdir if not refusal else "",
        cpus=tuple(i for i in job.cpu_indices or () if isinstance(i, int)),
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
    return hidden_folders()


def desktop_pause(job_id: int, attempt: int) -> runner.Pause | None:
    """How a desktop node (DCT_NODE_POLICY=desktop) stops, resumes and vacates this attempt; None elsewhere."""
    if not settings.DCT_DESKTOP.is_desktop:
        return None

    def report(suspended: bool) -> None:
        close_old_connections()
        if suspended:
            # mypy: the task runs only in a started node worker, where `current` is set.
            node = agent.current.name  # type: ignore[union-attr]
            transitions.suspend(job_id, attempt, timezone.now(), reason=desktop.suspend_reason(node))
        else:
            transitions.resume(job_id, attempt, timezone.now())

    return runner.Pause(
        wanted=desktop.pause_wanted,
        vacate_now=desktop.vacate_wanted,
        report=report,
        suspend_max_seconds=settings.DCT_SUSPEND_MAX_SECONDS,
    )


def _stop_request(job_id: int) -> str:
    if agent.shutting_down.is_set():
        return runner.StopReason.SHUTDOWN
    if agent.lost_contact():
        return runner.StopReason.LOST
    kill = Job.objects.filter(id=job_id).values_list("kill_requested", flat=True).first()
    # mypy: kill_requested is None when nothing was asked; .get(None, '') gives ''.
    return {KillRequest.CANCEL: runner.StopReason.CANCEL, KillRequest.HOLD: runner.StopReason.HOLD}.get(kill, "")  # type: ignore[call-overload]


def record(
    job: Job,
    attempt: int,
    result: runner.RunResult,
    missing: list[str],
    sandboxed: bool,
    notes: Sequence[str] = (),
    node: str = "",
) -> JobState:
    """Write one attempt's outcome to the database (conditional on the attempt).

    `node`: the node that started the attempt (`_run_on`, which set
    `job.started_at` as it wrote it), whose name and start the attempt's
    history then takes as they are, not read back; "": read from the row.
    """
    now = timezone.now()
    ran_seconds = max(result.wall_seconds - result.suspended_seconds, 0.0)  # time suspended is not charged
    measured = dict(
        exit_code=result.exit_code,
        run_seconds=round(ran_seconds, 3),
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
    from dctoolkit.accounts.usage import charge_job, charge_statements, job_cost

    if result.stopped == runner.StopReason.VACATE:
        # Back to the queue without using up an attempt; what it ran before its owner came back is charged.
        # mypy: as above, `current` is set in a started node worker.
        reason = desktop.vacate_reason(agent.current.name)  # type: ignore[union-attr]
        with transaction.atomic():
            moved = transitions.vacate(job.id, attempt, reason, now)
            if moved:
                charge_job(
                    job.owner_id, job.request_cpus, ran_seconds, now, job.request_gpus, job.request_memory_mb,
                    job.accounting_group_id,
                )  # fmt: skip
        if moved == JobState.QUEUED:  # HTCondor's 004 (its attempt number is given back: _log_end finds none)
            _log_event(job, eventlog.evicted)
        return moved or JobState.QUEUED
    retry_at = None
    if result.stopped == runner.StopReason.HOLD:
        state, reason = JobState.HELD, transitions.HELD_REASON
    else:
        state, reason = outcome(job, result, missing, notes)
        decided = by_policy(job, result, now)
        if decided.action == "hold":  # on_exit_hold: HoldReasonCode 3, its subcode
            state, reason = JobState.HELD, decided.reason
            measured.update(hold_code=jobpolicy.HOLD_BY_POLICY, hold_subcode=decided.subcode)
        elif decided.action == "rerun":  # on_exit_remove is false
            state, reason = JobState.QUEUED, "; ".join(part for part in (reason, decided.reason) if part)
        else:
            state, reason, retry_at = judged(job, result, state, reason, now)

    # One transaction: the database's write lock is taken once per job end,
    # and a job is never recorded as ended without its charge.  A job its
    # owner cancelled or held meanwhile keeps that state (finish settles its
    # kill) and is charged for what it ran.
    ran = (node, job.started_at) if node else None
    if ran and job.accounting_group_id is None and transitions.can_finish_with():
        # On PostgreSQL the end, its history and its charge are one statement (one round trip, one commit):
        # the user's account and day rows are locked only while it runs, not across five round trips.
        cost = job_cost(job.request_cpus, ran_seconds, job.request_gpus, job.request_memory_mb)
        charged = charge_statements(job.owner_id, cost, now, when="ended")
        if transitions.finish_with(charged, job.id, attempt, state, now, reason, retry_at, ran=ran, **measured):
            return state
    with transaction.atomic():
        if transitions.finish(job.id, attempt, state, now, reason=reason, retry_at=retry_at, ran=ran, **measured):
            charge_job(
                job.owner_id, job.request_cpus, ran_seconds, now, job.request_gpus, job.request_memory_mb,
                job.accounting_group_id,
            )  # fmt: skip
    return state


def by_policy(job: Job, result: runner.RunResult, now: datetime) -> jobpolicy.Decision:
    """What the job's on_exit_hold and on_exit_remove say of a run that ended by itself (an exit status or a
    signal); nothing for a job without them, or a run that was stopped or could not start."""
    if not job.policy or result.error or result.stopped or result.exit_code is None:
        return jobpolicy.NOTHING
    before = policyfacts.run_walls([job.id]).get(job.id, (0.0, 0.0))[0]
    wall = max(result.wall_seconds - result.suspended_seconds, 0.0)
    facts = policyfacts.job_facts(
        job, now, jobpolicy.JobStatus.RUNNING, walls=(before + wall, wall), exit_code=result.exit_code
    )
    return jobpolicy.on_exit(job.policy, facts)


def judged(
    job: Job, result: runner.RunResult, state: JobState, reason: str, now: datetime
) -> tuple[JobState, str, datetime | None]:
    """The outcome of a run that exited by itself, after its retry keys: (state, reason, retry at).

    A retry goes back to the queue, or waits (state `waiting`) until its
    delay is over.  Limit kills, cancel, hold and runs that could not start
    never come here.
    """
    if result.error or result.stopped or result.exit_code is None or result.exit_code < 0:
        return state, reason, None
    policy = RetryPolicy(job.max_retries, job.success_exit_code, job.retry_until, job.retry_delay_seconds)
    verdict = judge_exit(result.exit_code, policy, job.retries)
    status = f"exit status {result.exit_code}"
    if verdict.succeeded:
        return JobState.SUCCEEDED, reason.removeprefix(status).lstrip("; "), None
    if state == JobState.SUCCEEDED:  # exit 0, but success_exit_code is another
        reason = "; ".join(part for part in (status, reason) if part)
    reason = "; ".join(part for part in (reason, verdict.note) if part)
    if not verdict.retry:
        return JobState.FAILED, reason, None
    if verdict.delay_seconds:
        return JobState.WAITING, reason, now + timedelta(seconds=verdict.delay_seconds)
    return JobState.QUEUED, reason, None


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
