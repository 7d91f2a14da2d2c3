"""Scenarios on rows made directly: the submit path, one scheduling pass, history pages.

No node workers run here.  Rows are made with `bulk_create`; Celery
messages a scheduling pass sends go to the bench's private Redis, where
nobody consumes them, and are deleted between runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django.urls import Resolver404, resolve
from django.utils import timezone

from bench.report import Result, median
from bench.rows import insert_jobs
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Attempt, Dependency, Job, JobState, Submission
from dctoolkit.jobs.scheduling.dispatch import schedule_pass
from dctoolkit.nodes.models import Node, NodeState

USERS = 100
SLOTS_PER_NODE = 2  # like this machine's two cores: 200 free slots in all
NODE_MEMORY_MB = 8192
# The history pages measured: each one that this build has (resolves) is
# measured, and the slowest counts.
HISTORY_PAGES = (
    "/api/jobs/",  # the API's jobs list, first page
    "/completed/",  # the portal's completed jobs
    "/",  # home: the user's recent jobs
)
BATCH = 5000


def timed_ms(action: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    value = action()
    return (time.monotonic() - started) * 1000, value


def clear_jobs() -> None:
    """Every job and submission gone, quickly (no per-row cascade in Python)."""
    with connection.cursor() as cursor:
        for model in (Dependency, Attempt, Job):  # what refers to a job first
            cursor.execute(f"DELETE FROM {model._meta.db_table}")
        cursor.execute(f"DELETE FROM {Submission._meta.db_table}")


# --- submit_100k ------------------------------------------------------------------------
def submit_many(user: User, folder: Path, count: int, repeats: int) -> Result:
    """Seconds for `submit()` to accept one `queue = count` file, beside a bare bulk insert of the same rows."""
    text = f"executable = true.sh\nqueue = {count}\n"
    ours, floor = [], []
    for _ in range(repeats):
        clear_jobs()
        ours.append(timed_ms(lambda: submit(text, "job.txt", user, FolderFiles(folder)))[0] / 1000)
        if Job.objects.filter(state=JobState.QUEUED).count() != count:
            raise RuntimeError(f"bench: submit queued the wrong number of jobs (wanted {count})")
        clear_jobs()
        floor.append(timed_ms(lambda: bare_insert(user, count))[0] / 1000)
    clear_jobs()
    return Result("submit_100k", median(ours), "s", "bulk_create of the same rows", median(floor), count,
                  "<= 10 s", "submit() in-process, until every job is queued")  # fmt: skip


def bare_insert(user: User, count: int) -> None:
    now = timezone.now()
    with transaction.atomic():
        sub = Submission.objects.create(owner=user, source_name="job.txt", text="", job_count=count)
        Job.objects.bulk_create(
            [Job(submission=sub, owner=user, name="true.sh", process=i, executable="true.sh", submitted_at=now)
             for i in range(count)],
            batch_size=2000,
        )  # fmt: skip


# --- cancel_10k -------------------------------------------------------------------------
def cancel_batch(user: User, count: int, repeats: int) -> Result:
    """Milliseconds for one POST /api/submissions/{id}/cancel/ of a `count`-job batch (the answer lists every job),
    beside a bare UPDATE of the same rows to cancelled."""
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    ours, floor = [], []
    for _ in range(repeats):
        clear_jobs()
        bare_insert(user, count)
        url = f"/api/submissions/{Submission.objects.get().id}/cancel/"
        ms, response = timed_ms(lambda url=url: client.post(url))
        if response.status_code != 200 or len(response.json()["jobs"]) != count:
            raise RuntimeError(f"bench: cancelling the batch answered {response.status_code}, not {count} jobs")
        ours.append(ms)
        clear_jobs()
        bare_insert(user, count)
        floor.append(timed_ms(lambda: Job.objects.update(state=JobState.CANCELLED))[0])
    clear_jobs()
    return Result("cancel_10k", median(ours), "ms", "bare UPDATE of the same rows", median(floor), count,
                  "< 1000 ms, one call", "POST /api/submissions/{id}/cancel/, answer included")  # fmt: skip


# --- schedule_pass ----------------------------------------------------------------------
def schedule_passes(
    sizes: dict[str, int], node_count: int, user_count: int, repeats: int, broker: redis.Redis
) -> list[Result]:
    """One pass filling every free slot of `node_count` nodes, per queue size, beside a queue as long as the
    slots; then the cost per placement at the longest queue (beside the shortest), and the peak memory of a
    scheduler process (`manage.py scheduler --once`) making a pass over the longest queue (beside the
    shortest).  The queues are made by the database (`bench.rows`), not `bulk_create`."""
    users = make_users(user_count)
    nodes = make_nodes(node_count)
    slots = node_count * SLOTS_PER_NODE
    clear_jobs()
    subs = [Submission.objects.create(owner=u, source_name="job.txt", text="", job_count=0) for u in users]
    generate_queued(subs, slots)
    floor = time_pass(repeats, slots, nodes, broker)
    floor_rss = scheduler_peak_mb(slots, nodes, broker)
    where = f"{node_count} nodes x {SLOTS_PER_NODE} slots, {user_count} users"
    results, per_placement = [], {}
    for name, size in sizes.items():
        generate_queued(subs, size - Job.objects.count())
        ms, cpu_ms = time_passes(repeats, slots, nodes, broker)
        per_placement[size] = ms / slots
        results.append(Result(name, ms, "ms", f"queue of {slots} (= free slots)", floor, size,
                              "placement <= 0.1 ms, flat", f"{where}; CPU {cpu_ms:.0f} ms a pass"))  # fmt: skip
    if per_placement:
        shortest, longest = min(per_placement), max(per_placement)
        results.append(Result("schedule_pass_per_placement", per_placement[longest], "ms",
                              f"the same at {shortest:,} queued", per_placement[shortest], longest,
                              "<= 0.1 ms, flat", f"one pass / {slots} placements; {where}"))  # fmt: skip
        results.append(Result("scheduler_rss_1m", scheduler_peak_mb(slots, nodes, broker), "MB",
                              f"the same with {slots} queued", floor_rss, longest, "<= 300 MB",
                              "peak RSS of manage.py scheduler --once (a round: its pass, housekeeping)"))  # fmt: skip
    clear_jobs()
    Node.objects.filter(name__in=nodes).delete()
    return results


def scheduler_peak_mb(expected: int, nodes: list[str], broker: redis.Redis) -> float:
    """Peak resident memory (MB) of one `manage.py scheduler --once` over the queue as it is; it must place
    `expected` jobs (put back after)."""
    reset_queue(nodes, broker)
    proc = subprocess.Popen([sys.executable, "manage.py", "scheduler", "--once"], cwd=settings.BASE_DIR,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    # Not wait4's ru_maxrss: Linux counts in it the parent's resident memory at the fork (this bench's, hundreds
    # of MB at a million rows), so it read the same 614 MB for any queue.  The process's own high-water mark
    # (VmHWM, its memory since it started the scheduler's program) is read until it exits.
    peak_kib = 0
    while proc.poll() is None:
        peak_kib = max(peak_kib, high_water_kib(proc.pid))
        time.sleep(0.02)
    status = proc.returncode
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if status != 0:
        raise RuntimeError(f"bench: manage.py scheduler --once failed ({status}):\n{err[-2000:]}")
    placed = Job.objects.filter(state=JobState.DISPATCHED).count()
    if placed != expected:
        raise RuntimeError(f"bench: the scheduler placed {placed} jobs, not {expected}")
    reset_queue(nodes, broker)
    return peak_kib / 1024


def high_water_kib(pid: int) -> int:
    """VmHWM of process `pid` (its peak resident memory so far), in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except (FileNotFoundError, ProcessLookupError):
        return 0


def waiting_beside_queue(size: int, waiting: int, node_count: int, repeats: int, broker: redis.Redis) -> Result:
    """One pass over a queue of `size`, beside `waiting` jobs waiting on a dependency, against the same pass
    without them (the issue: within 10 %)."""
    users = make_users(USERS)
    nodes = make_nodes(node_count)
    slots = node_count * SLOTS_PER_NODE
    clear_jobs()
    subs = [Submission.objects.create(owner=u, source_name="job.txt", text="", job_count=0) for u in users]
    add_queued(subs, size)
    alone = time_pass(repeats, slots, nodes, broker)
    parent = Job.objects.create(submission=subs[0], owner_id=subs[0].owner_id, name="parent", executable="true.sh",
                                state=JobState.RUNNING, submitted_at=timezone.now())  # fmt: skip
    add_waiting(subs, waiting, parent)
    beside = time_pass(repeats, slots, nodes, broker)
    clear_jobs()
    Node.objects.filter(name__in=nodes).delete()
    return Result("schedule_pass_waiting", beside, "ms", f"the same pass without the {waiting} waiting jobs", alone,
                  size, "within 10 %", f"{waiting} jobs waiting on a running parent (after_ok)")  # fmt: skip


def requirements_beside_plain(size: int, node_count: int, repeats: int, broker: redis.Redis) -> Result:
    """One pass over a queue of `size` where every job has ClassAd `requirements` and `rank` (ten distinct
    expressions, one per tenth of the users, over nodes of two kinds), against the same pass with plain jobs
    (each queue made afresh, so that neither pass reads rows another UPDATE rewrote)."""
    users = make_users(USERS)
    nodes = make_nodes(node_count)
    # Two kinds of node: half with a label and more memory (every expression below holds on both kinds).
    Node.objects.filter(name__in=nodes[::2]).update(labels=["fast"], memory_total_mb=2 * NODE_MEMORY_MB, arch="x86_64")
    slots = node_count * SLOTS_PER_NODE
    clear_jobs()
    subs = [Submission.objects.create(owner=u, source_name="job.txt", text="", job_count=0) for u in users]
    add_queued(subs, size)
    plain = time_pass(repeats, slots, nodes, broker)
    clear_jobs()
    subs = [Submission.objects.create(owner=u, source_name="job.txt", text="", job_count=0) for u in users]
    placements = {
        sub.pk: {
            "requirements": f'(Memory >= RequestMemory) && (OpSys == "LINUX") && (Has_fast || Cpus >= {1 + i % 2}) '
            f"&& (Disk >= RequestDisk) && (Memory >= {256 * (1 + i % 5)})",
            "rank": "Memory",
        }
        for i, sub in enumerate(subs)
    }
    add_queued(subs, size, placements)
    ours = time_pass(repeats, slots, nodes, broker)
    clear_jobs()
    Node.objects.filter(name__in=nodes).delete()
    return Result("schedule_pass_requirements", ours, "ms", "the same pass, no requirements", plain, size,
                  "<= 100 ms at 100k", f"requirements and rank on every job (10 distinct), {node_count} nodes "
                  f"x {SLOTS_PER_NODE} slots, {USERS} users")  # fmt: skip


def add_waiting(subs: list[Submission], count: int, parent: Job) -> None:
    """`count` jobs waiting on `parent` (after_ok), spread over the users, with their dependency rows."""
    now = timezone.now()
    for start in range(0, count, BATCH):
        rows = [Job(submission=subs[i % len(subs)], owner_id=subs[i % len(subs)].owner_id, name="child",
                    executable="true.sh", process=i, state=JobState.WAITING, submitted_at=now)
                for i in range(start, min(count, start + BATCH))]  # fmt: skip
        jobs = Job.objects.bulk_create(rows, batch_size=BATCH)
        if jobs and jobs[0].pk is None:  # MySQL: no RETURNING
            jobs = list(Job.objects.filter(state=JobState.WAITING).order_by("-id")[: len(rows)])
        Dependency.objects.bulk_create(
            [Dependency(child_id=j.pk, parent_id=parent.pk, kind="after_ok") for j in jobs], batch_size=BATCH
        )


def make_users(count: int) -> list[User]:
    User.objects.bulk_create([User(username=f"bench-u{i:04d}") for i in range(count)], ignore_conflicts=True)
    return list(User.objects.filter(username__startswith="bench-u").order_by("username")[:count])


def make_nodes(count: int) -> list[str]:
    names = [f"bench-n{i:04d}" for i in range(count)]
    Node.objects.filter(name__in=names).delete()
    Node.objects.bulk_create(
        [Node(name=n, state=NodeState.ONLINE, slots=SLOTS_PER_NODE, cpus=SLOTS_PER_NODE, threads=SLOTS_PER_NODE,
              memory_total_mb=NODE_MEMORY_MB, memory_available_mb=NODE_MEMORY_MB, sandbox=True,
              last_heartbeat=timezone.now()) for n in names]
    )  # fmt: skip
    return names


def generate_queued(subs: list[Submission], count: int) -> None:
    """`count` more plain queued jobs, spread over the users in turn, made by the database itself."""
    if count > 0:
        insert_jobs(count, [(sub.owner_id, sub.pk) for sub in subs], QUEUED_VALUES | {"submitted_at": timezone.now()})


QUEUED_VALUES = {"name": "true.sh", "executable": "true.sh"}


def add_queued(subs: list[Submission], count: int, placements: dict[int, dict] | None = None) -> None:
    """`count` more queued jobs, spread over the users in turn (with `placements[submission id]`, if given)."""
    now = timezone.now()
    for start in range(0, count, BATCH):
        rows = []
        for i in range(start, min(count, start + BATCH)):
            sub = subs[i % len(subs)]
            rows.append(Job(submission=sub, owner_id=sub.owner_id, name="true.sh", executable="true.sh",
                            process=i, submitted_at=now, placement=(placements or {}).get(sub.pk, {})))  # fmt: skip
        Job.objects.bulk_create(rows, batch_size=BATCH)


def time_pass(repeats: int, expected: int, nodes: list[str], broker: redis.Redis) -> float:
    """Median ms of `repeats` passes (after one to warm up), each from the same queue."""
    return time_passes(repeats, expected, nodes, broker)[0]


def time_passes(repeats: int, expected: int, nodes: list[str], broker: redis.Redis) -> tuple[float, float]:
    """Median wall ms and median CPU ms of this process (SQLite's work included; Redis's not) of `repeats`
    passes (after one to warm up), each from the same queue."""
    times, cpu = [], []
    for i in range(repeats + 1):
        now = reset_queue(nodes, broker)
        started = time.process_time()
        ms, placed = timed_ms(lambda now=now: schedule_pass(now))
        spent = (time.process_time() - started) * 1000
        if placed != expected:
            raise RuntimeError(f"bench: a scheduling pass placed {placed} jobs, not {expected}")
        if i:
            times.append(ms)
            cpu.append(spent)
    broker.delete(*nodes)
    return median(times), median(cpu)


def reset_queue(nodes: list[str], broker: redis.Redis) -> datetime:
    """What the last pass dispatched back in the queue (jobs waiting on a dependency stay waiting), the nodes
    heard from now, their queues in Redis empty; returns now."""
    now = timezone.now()
    Job.objects.filter(state=JobState.DISPATCHED).update(
        state=JobState.QUEUED, node=None, attempts=0, dispatched_at=None, gpu_indices=[]
    )
    Node.objects.filter(name__in=nodes).update(last_heartbeat=now)
    broker.delete(*nodes)
    return now


# --- history pages ----------------------------------------------------------------------
def history_page(count: int, repeats: int) -> Result:
    """The slowest history page with `count` finished jobs, beside the same pages with 100."""
    clear_jobs()
    user, _ = User.objects.get_or_create(username="bench-history")
    sub = Submission.objects.create(owner=user, source_name="job.txt", text="", job_count=count)
    pages = [p for p in HISTORY_PAGES if _resolves(p)]
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    add_finished(sub, 100)
    small = {p: time_page(client, p, repeats) for p in pages}
    add_finished(sub, count - 100)
    big = {p: time_page(client, p, repeats) for p in pages}
    slowest = max(pages, key=big.get)
    clear_jobs()
    note = "; ".join(f"{p}: {big[p]:.1f} ms" for p in pages)
    return Result("history_page_1m", big[slowest], "ms", f"{slowest} with 100 jobs", small[slowest], count,
                  "<= 200 ms", f"slowest of {note}")  # fmt: skip


def _resolves(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


def add_finished(sub: Submission, count: int) -> None:
    """`count` more succeeded jobs of `sub`'s owner, made by the database itself (`bench.rows`)."""
    if count <= 0:
        return
    finished = timezone.now()
    values = {"state": JobState.SUCCEEDED, "exit_code": 0, "attempts": 1, "executable": "true.sh",
              "submitted_at": finished - timedelta(seconds=2), "started_at": finished - timedelta(seconds=1),
              "finished_at": finished, "run_seconds": 1.0, "cpu_seconds": 0.9, "max_rss_mb": 3.0}  # fmt: skip
    insert_jobs(count, [(sub.owner_id, sub.pk)], values, {"name": "'job-' || seq.n"})


def time_page(client: Client, path: str, repeats: int) -> float:
    """Median ms of `repeats` GETs of `path` (after one to warm up); the page must answer 200."""
    times = []
    for i in range(repeats + 1):
        ms, response = timed_ms(lambda: client.get(path))
        if response.status_code != 200:
            raise RuntimeError(f"bench: GET {path} answered {response.status_code}")
        if i:
            times.append(ms)
    return median(times)
