"""The node side of a worker: who it is, its registration, and its heartbeats.

Wired to Celery's worker signals in `dctoolkit/nodes/worker/tasks.py`, so it works
both under `worker_entry.py` and under a plain `celery -A dctoolkit worker -Q node-1`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from dctoolkit.jobs import gputally
from dctoolkit.nodes.models import Node, NodeState
from dctoolkit.nodes.worker import cgroups, desktop, gpuwatch, sandbox, warm
from dctoolkit.nodes.worker.metrics import probe_machine

log = logging.getLogger(__name__)


@dataclass
class NodeIdentity:
    name: str
    slots: int
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sandbox: bool = False
    sandbox_problem: str = ""
    containers: list[str] = field(default_factory=list)

    @property
    def accepts_jobs(self) -> bool:
        return self.sandbox or not settings.DCT_REQUIRE_SANDBOX


# Set once when the worker starts; read by the job task.
current: NodeIdentity | None = None
shutting_down = threading.Event()
_stop_heartbeats = threading.Event()
_last_beat_ok = time.monotonic()
# A node that has not reached the database for this share of
# DCT_NODE_TIMEOUT_SECONDS kills its own jobs: the scheduler is about to
# declare it lost and run them elsewhere, and two copies must never run.
SELF_FENCE_SHARE = 0.8


def lost_contact() -> bool:
    """True when this node's heartbeats have failed long enough that its jobs are being requeued."""
    silent = time.monotonic() - _last_beat_ok
    return silent > settings.DCT_NODE_TIMEOUT_SECONDS * SELF_FENCE_SHARE


def node_name_from_queues(queues: list[str]) -> str:
    """The node a worker serves: its one queue other than `control`."""
    names = [q for q in queues if q not in ("control", "celery")]
    if len(names) != 1:
        raise SystemExit(
            f"a node worker consumes exactly one node queue (got {names or 'none'}); "
            "start it with 'python worker_entry.py --node NAME' or 'celery -A dctoolkit worker -Q NAME'"
        )
    return names[0]


def start(name: str, slots: int | None = None) -> NodeIdentity:
    """Probe the machine and the sandbox, register the node, and start heartbeats."""
    global current, _last_beat_ok
    ok, problem = sandbox.probe()
    containers = []
    for path in settings.DCT_CONTAINERS:
        # A container is a sandbox's root: without the sandbox there is none to offer.
        why = sandbox.container_problem(path) if ok else "the sandbox is off"
        if why:
            log.warning("DCT_CONTAINERS: %s; not offered", why)
        else:
            containers.append(path)
    for extra in sandbox.parse_sandbox_paths(settings.DCT_SANDBOX_PATHS):
        if not os.path.isdir(extra.path):
            log.warning("DCT_SANDBOX_PATHS: %s is not a folder on this machine; jobs will not see it", extra.path)
    extras = [(extra.path, extra.writable) for extra in sandbox.parse_sandbox_paths(settings.DCT_SANDBOX_PATHS)]
    if exposed := gpuwatch.writable_by_jobs(settings.DCT_GPU_UTILIZATION_SOURCE, extras, ok):
        log.warning(
            "DCT_GPU_UTILIZATION_SOURCE=%s: %s; a job could fake its GPUs' figures (it is read safely: no link, "
            "no FIFO, at most 64 KiB); keep it where jobs cannot write, such as /run",
            settings.DCT_GPU_UTILIZATION_SOURCE, exposed,
        )  # fmt: skip
    if settings.DCT_DESKTOP.problems:
        raise RuntimeError("; ".join(settings.DCT_DESKTOP.problems))
    desktop.enable(settings.DCT_DESKTOP.is_desktop)
    metrics = probe_machine()
    current = NodeIdentity(
        name=name,
        slots=slots or settings.DCT_NODE_SLOTS or metrics.threads,
        sandbox=ok,
        sandbox_problem=problem,
        containers=containers,
    )
    if not ok:
        if settings.DCT_REQUIRE_SANDBOX:
            log.error("node %s: sandbox off (%s); DCT_REQUIRE_SANDBOX=1, so it takes no jobs", name, problem)
        else:
            log.warning("node %s: sandbox off (%s); jobs run UNFENCED (DCT_REQUIRE_SANDBOX=0)", name, problem)
    register(current)
    _last_beat_ok = time.monotonic()
    threading.Thread(target=_heartbeat_loop, name="heartbeat", daemon=True).start()
    return current


def register(identity: NodeIdentity) -> None:
    """Create or refresh the node row.  Jobs it was running under an earlier worker died with it."""
    from dctoolkit.jobs.models import STARTED_STATES
    from dctoolkit.jobs.scheduling.wake import wake_scheduler
    from dctoolkit.jobs.transitions import requeue_node_jobs

    node, created = Node.objects.get_or_create(name=identity.name)
    if not created and node.worker_id and node.worker_id != identity.worker_id:
        moved = requeue_node_jobs(node, "node restarted", timezone.now(), states=STARTED_STATES)
        if moved:
            log.warning("node %s restarted: %d job(s) it was running go back to the queue", identity.name, moved)
    Node.objects.filter(id=node.id).update(started_at=timezone.now())
    beat(identity)
    wake_scheduler()


def beat(identity: NodeIdentity) -> None:
    """One heartbeat: this machine's metrics, and the node is online."""
    m = probe_machine(str(settings.DCT_SCRATCH) if settings.DCT_SCRATCH.exists() else "/")
    found = Node.objects.filter(name=identity.name).values("state", "owner_present", "reclaimed_at").first()
    row: dict = dict(found) if found else {}
    was = row.get("state")
    Node.objects.update_or_create(
        name=identity.name,
        defaults=dict(
            hostname=socket.gethostname(),
            state=NodeState.ONLINE,
            slots=identity.slots,
            cpus=m.cpus,
            threads=m.threads,
            memory_total_mb=m.memory_total_mb,
            memory_available_mb=m.memory_available_mb,
            disk_free_mb=m.disk_free_mb,
            load=m.load,
            gpus=m.gpus,
            cuda=m.cuda,
            arch=m.arch,
            labels=settings.DCT_NODE_LABELS,
            sandbox=identity.sandbox,
            containers=identity.containers,
            enforcement=cgroups.enforcement(identity.name),
            accepts_jobs=identity.accepts_jobs,
            worker_id=identity.worker_id,
            last_heartbeat=timezone.now(),
            **desktop_fields(row),
        ),
    )
    if was == NodeState.OFFLINE:
        log.info("node %s is back online", identity.name)
    if m.gpus:
        record_gpu_use(identity.name)


def record_gpu_use(node_name: str) -> int:
    """Sample the GPUs this node's running jobs hold and fold it into their rows (gputally); returns the
    rows changed.  Trouble here is logged, never raised: a heartbeat that fails fences the node's jobs."""
    try:
        held = gputally.running_gpu_jobs(node_name)
        if not held:
            gpuwatch.sample([], {}, time.monotonic())  # forget the windows of jobs gone
            return 0
        jobs = [(h.job_id, h.attempt, h.indices) for h in held]
        samples = gpuwatch.sample(jobs, gpuwatch.read_percents(), time.monotonic())
        return gputally.record_samples(held, samples, timezone.now())
    except Exception as exc:
        log.warning("GPU utilisation not recorded this beat: %s", exc)
        return 0


# The last "I need it now" this node has acted on (the node row's reclaimed_at).
_reclaim_seen: object = None


def desktop_fields(row: dict) -> dict:
    """The node row's desktop fields for this beat: its policy and whether its owner is present (desktop.py).

    Looks at the owner each beat; an "I need it now" not seen before vacates the node's jobs.
    """
    global _reclaim_seen
    config = settings.DCT_DESKTOP
    if not config.is_desktop:
        return {"policy": "", "owner": config.owner, "owner_present": False}
    now = timezone.now()
    reclaimed_at = row.get("reclaimed_at")
    new_reclaim = reclaimed_at is not None and reclaimed_at != _reclaim_seen
    _reclaim_seen = reclaimed_at
    since = (now - reclaimed_at).total_seconds() if reclaimed_at else None
    presence = desktop.observe(config, since, new_reclaim)
    fields = {
        "policy": config.policy,
        "owner": config.owner,
        "idle_minutes": config.idle_minutes,
        "owner_present": presence.present,
    }
    if row.get("owner_present") != presence.present or not row:
        fields["presence_since"] = now
        if not presence.present:  # it lends again: a pass now, not at the next tick
            from dctoolkit.jobs.scheduling.wake import wake_scheduler_soon

            wake_scheduler_soon()
    return fields


def _heartbeat_loop() -> None:
    global _last_beat_ok
    while not _stop_heartbeats.wait(settings.DCT_HEARTBEAT_SECONDS):
        try:
            close_old_connections()
            # mypy: heartbeats start only after start() set `current`.
            beat(current)  # type: ignore[arg-type]
            _last_beat_ok = time.monotonic()
            warm.retire_stale()
        except Exception as exc:  # database away: log and try again next beat
            log.warning("heartbeat failed (%s); retrying in %ss", exc, settings.DCT_HEARTBEAT_SECONDS)
            connections.close_all()


def stop() -> None:
    """The worker is shutting down: stop heartbeats, and running jobs go back to the queue."""
    shutting_down.set()
    _stop_heartbeats.set()
