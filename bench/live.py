"""Scenarios on the live system: real scheduler, real node workers, real jobs.

Jobs go in through the real submission path, `dctoolkit.jobs.intake.queue.submit()`,
called in this process (so the numbers measure the system, not Python's
start-up of a `./dct submit` command); the baseline Celery worker gets the
same script through plain `send_task`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import astuple, dataclass, field, fields, replace
from pathlib import Path

import psutil
import redis
from django.contrib.auth.models import User
from django.db import connection

from bench import baseline, cpu
from bench.report import Result, median, percentile
from bench.stack import PYTHON, Stack
from dctoolkit.dev.stack import wait_until
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import FINAL_STATES, Job, JobState
from dctoolkit.operations.passes import read_stats

TRIVIAL_SCRIPT = "#!/bin/sh\nexit 0\n"
# How often the bench looks at a job it waits for: fine enough for a 10 ms
# resolution on latency, and one indexed read of one row each time.
LATENCY_POLL_SECONDS = 0.002
THROUGHPUT_POLL_SECONDS = 0.05
JOB_TIMEOUT_SECONDS = 60


def write_script(workdir: Path) -> Path:
    """The trivial job every scenario submits (`true.sh` in `workdir/jobs`); returns that folder."""
    folder = workdir / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "true.sh"
    script.write_text(TRIVIAL_SCRIPT)
    script.chmod(0o755)
    return folder


@dataclass(frozen=True)
class Phases:
    """When one latency run's job reached each step, in ms from the `submit()` call: the call's return, and the
    row's own stamps (the pass that claimed it began, the node started it, the node recorded its end; each
    process's wall clock, this machine's), and when the bench saw it final."""

    returned: float
    dispatched: float
    started: float
    finished: float
    seen: float

    @staticmethod
    def medians(runs: list[Phases]) -> str:
        """Each step's median over `runs`, as a note."""
        steps = [median(list(column)) for column in zip(*map(astuple, runs), strict=True)]
        names = [f.name for f in fields(Phases)]
        return ", ".join(f"{name} {value:.1f}" for name, value in zip(names, steps, strict=True))


@dataclass
class Live:
    """What the live scenarios share: the stack, who submits, where the script is."""

    stack: Stack
    user: User
    folder: Path
    broker: redis.Redis
    redis_pid: int = 0
    phases: list[Phases] = field(default_factory=list)

    @classmethod
    def prepare(cls, stack: Stack, user: User, workdir: Path, broker: redis.Redis, redis_pid: int = 0) -> Live:
        return cls(stack, user, write_script(workdir), broker, redis_pid)

    @property
    def script(self) -> str:
        return str(self.folder / "true.sh")

    def submit(self, count: int = 1, node: str = "") -> list[Job]:
        text = "executable = true.sh\n" + (f"node = {node}\n" if node else "") + f"queue = {count}\n"
        return submit(text, "job.txt", self.user, FolderFiles(self.folder))

    def run_one(self, node: str = "") -> float:
        """Submit one trivial job and wait for it to end; returns ms from submit to finished.

        Each run's phases (`Phases`, ms from the call) are kept in `self.phases`."""
        started, wall = time.monotonic(), time.time()
        (job,) = self.submit(node=node)
        returned = time.monotonic()
        state = wait_until(
            lambda: final_state(job.id),
            JOB_TIMEOUT_SECONDS,
            f"job {job.id} to end",
            interval=LATENCY_POLL_SECONDS,
        )
        elapsed = (time.monotonic() - started) * 1000
        if state != JobState.SUCCEEDED:
            raise RuntimeError(f"bench: trivial job {job.id} ended {state}: {Job.objects.get(id=job.id).reason}")
        stamps = Job.objects.filter(id=job.id).values_list("dispatched_at", "started_at", "finished_at").get()
        at = [(stamp.timestamp() - wall) * 1000 for stamp in stamps]
        self.phases.append(Phases((returned - started) * 1000, *at, elapsed))
        return elapsed

    def baseline_one(self) -> float:
        """The same script through the plain Celery worker; ms from send to done."""
        key = f"bench:done:{uuid.uuid4().hex}"
        started = time.monotonic()
        baseline.app.send_task(baseline.TASK, args=[self.script, key], queue=baseline.QUEUE)
        if self.broker.blpop([key], timeout=JOB_TIMEOUT_SECONDS) is None:
            raise RuntimeError("bench: the baseline Celery worker did not run its task")
        return (time.monotonic() - started) * 1000


def final_state(job_id: int) -> str | None:
    """The job's state once final, else None: one read of one row by its key, its SQL written out (the ORM's
    compiling of it took half a millisecond of CPU every 2 ms, from the cores the job ran on)."""
    table = connection.ops.quote_name(Job._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT state FROM {table} WHERE id = %s", [job_id])
        row = cursor.fetchone()
    return row[0] if row and row[0] in FINAL_VALUES else None


FINAL_VALUES = frozenset(state.value for state in FINAL_STATES)


def latency(live: Live, runs: int) -> list[Result]:
    """One trivial job at a time on an idle system; each run beside one baseline run."""
    live.run_one()  # warm both paths up
    live.baseline_one()
    live.phases.clear()
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(live.run_one())
        theirs.append(live.baseline_one())
    note = (
        f"submit() in-process -> succeeded, polled every 2 ms; median ms from the call: {Phases.medians(live.phases)}"
    )
    return [
        Result(f"latency_p{p}", percentile(ours, p), "ms", "plain Celery task, same script",
               percentile(theirs, p), runs, target, note)
        for p, target in ((50, "<= 100 ms"), (95, ""), (99, "<= 300 ms"))
    ]  # fmt: skip


def sandbox_overhead(live: Live, runs: int, fenced: str, open_node: str) -> Result:
    """Median latency of a trivial job on a node with bubblewrap and on one without, alternating."""
    live.run_one(fenced)
    live.run_one(open_node)
    with_bwrap, without = [], []
    for _ in range(runs):
        with_bwrap.append(live.run_one(fenced))
        without.append(live.run_one(open_node))
    return Result("sandbox_overhead", median(with_bwrap), "ms", "same job, node without bubblewrap",
                  median(without), runs, "report", "median submit -> succeeded")  # fmt: skip


def throughput(live: Live, count: int, nodes: tuple[str, ...]) -> list[Result]:
    """`queue = count` trivial jobs on `nodes`: jobs per second from submit to the last finish; then the
    baseline.

    Returns `throughput` and `server_cpu_per_job` (the server's CPU during the same run); the throughput's
    note has the nodes' CPU a job (their workers with everything under them, the jobs included) beside the
    baseline worker's a task: on one machine, the nodes' share is most of what the throughput is bound by.
    """
    before = server_cpu(live)
    passes_before = read_stats(live.broker) or {}
    workers = [live.stack.procs[name].pid for name in nodes]
    nodes_before, workers_before = trees_seconds(live, nodes), cpu.cpu_seconds(workers)
    ours = run_batch(live, count)
    nodes_ms = (trees_seconds(live, nodes) - nodes_before) / count * 1000
    workers_ms = cpu.spent(workers_before, cpu.cpu_seconds(workers)).seconds / count * 1000
    after = server_cpu(live)
    redis_before = redis_cpu(live.broker)
    baseline_before = trees_seconds(live, ("baseline",))
    theirs = baseline_throughput(live, count)
    baseline_ms = (trees_seconds(live, ("baseline",)) - baseline_before) / count * 1000
    redis_per_task = (redis_cpu(live.broker) - redis_before) / count * 1000
    # Read after the baseline: the scheduler writes its pass counts once a second (its idle passes
    # meanwhile, about one a second, are counted too).
    passes = passes_per_job(passes_before, read_stats(live.broker) or {}, count)
    cost = server_cpu_result(before, after, count, redis_per_task)
    return [
        Result("throughput", ours, "jobs/s", "plain Celery worker, same broker and concurrency",
               theirs, count, ">= 0.5 x baseline and >= 100/s",
               f"node workers' CPU {nodes_ms:.3g} ms a job with their sandboxes and jobs ({workers_ms:.3g} ms "
               f"the worker processes' own), the plain worker's {baseline_ms:.3g} ms a task with its subprocesses"),
        replace(cost, note=f"{cost.note}; {passes}"),
    ]  # fmt: skip


def trees_seconds(live: Live, names: tuple[str, ...]) -> float:
    """CPU seconds of the stack's processes `names`, each with everything under it (`cpu.tree_seconds`)."""
    return sum(cpu.tree_seconds(live.stack.procs[name].pid) for name in names)


def passes_per_job(before: dict[str, float], after: dict[str, float], count: int) -> str:
    """The scheduler's passes during a run, per finished job, and how its plans ended (`dispatch.OUTCOMES`),
    from its statistics (`operations.passes`)."""

    def per_job(key: str) -> float:
        return (after.get(key, 0) - before.get(key, 0)) / count

    outcomes = sorted(key for key in after if key.startswith("outcome:") and per_job(key))
    ended = ", ".join(f"{key.removeprefix('outcome:')} {per_job(key):.2f}" for key in outcomes)
    return f"{per_job('passes'):.2f} scheduling passes a job, its plans a job: {ended or 'none'}"


def run_batch(live: Live, count: int) -> float:
    """`queue = count` trivial jobs; jobs per second from submit to the last one's end (all must succeed)."""
    started = time.monotonic()
    jobs = live.submit(count)
    submission = jobs[0].submission_id
    remaining = Job.objects.filter(submission_id=submission).exclude(state__in=FINAL_STATES)
    wait_until(lambda: not remaining.exists(), 600, f"{count} jobs to end", interval=THROUGHPUT_POLL_SECONDS)
    rate = count / (time.monotonic() - started)
    failed = Job.objects.filter(submission_id=submission).exclude(state=JobState.SUCCEEDED).count()
    if failed:
        raise RuntimeError(f"bench: {failed} of {count} trivial jobs did not succeed")
    return rate


# A scrape a second: fifteen times Prometheus' usual 15 s, so that a cost too small to see at 15 s shows.
SCRAPE_INTERVAL_SECONDS = 1.0


def metrics_scrape_throughput(live: Live, count: int) -> Result:
    """Throughput while a scraper renders `GET /metrics` every second, beside the same batch unscraped.

    Unscraped, scraped, unscraped again: the baseline is the mean of the two
    unscraped batches, so a drift of the machine during the three does not
    read as the scrape's cost.
    """
    plain = [run_batch(live, count)]
    durations = live.stack.workdir / "scrapes.txt"
    durations.unlink(missing_ok=True)
    live.stack.start("scraper", [PYTHON, "-m", "bench.scraper", str(SCRAPE_INTERVAL_SECONDS), str(durations)])
    try:
        # The first scrape (Django's start-up and the first query) before the batch, so the batch sees steady scrapes.
        wait_until(lambda: durations.exists() and durations.stat().st_size > 0, 120, "the first scrape", interval=0.1)
        scraped = run_batch(live, count)
        live.stack.check_alive()
    finally:
        live.stack.stop("scraper")
    plain.append(run_batch(live, count))
    took = [float(line) for line in durations.read_text().split()]
    note = (
        f"{len(took)} scrapes of the metrics collector, one every {SCRAPE_INTERVAL_SECONDS:g} s in a process of "
        f"its own, median {median(took):.1f} ms a scrape; baseline: the mean of {count} jobs unscraped just "
        f"before and just after ({plain[0]:.1f} and {plain[1]:.1f} jobs/s)"
    )
    return Result("metrics_scrape_throughput", scraped, "jobs/s", "same batch without the scraper",
                  sum(plain) / 2, count, ">= 0.95 x baseline", note)  # fmt: skip


# What the server's CPU is counted of: the scheduler (and its children), the database server's
# backends serving this database (none for SQLite: it runs inside the processes that use it),
# and the bench's Redis.
SERVER_PARTS = ("scheduler", "database", "redis")


def server_cpu(live: Live) -> dict[str, dict[int, float]]:
    """CPU seconds of each process of each part of the server, now."""
    root = psutil.Process(live.stack.procs["scheduler"].pid)
    scheduler = [root.pid, *(p.pid for p in root.children(recursive=True))]
    return {
        "scheduler": cpu.cpu_seconds(scheduler),
        "database": cpu.cpu_seconds(database_backends()),
        "redis": cpu.cpu_seconds([live.redis_pid] if live.redis_pid else []),
    }


def database_backends() -> list[int]:
    """The pids of the PostgreSQL backends serving this database (the bench's own connection
    included: it submits the jobs); none on another engine."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [pid for (pid,) in cursor.fetchall()]


def redis_cpu(broker: redis.Redis) -> float:
    """Redis's own CPU seconds (user + system, from its getrusage: microseconds, finer than /proc's ticks)."""
    info = broker.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def server_cpu_total_ms(before: dict, after: dict) -> float:
    """The server's CPU, every part summed, between two `server_cpu` readings, in ms."""
    return sum(cpu.spent(before[part], after[part]).seconds for part in SERVER_PARTS) * 1000


def server_cpu_result(before: dict, after: dict, count: int, redis_per_task_ms: float) -> Result:
    """`server_cpu_per_job`: the server's CPU per finished job, in ms, beside raw Celery's broker per task."""
    parts = {part: cpu.spent(before[part], after[part]) for part in SERVER_PARTS}
    per_job = {part: spent.seconds / count * 1000 for part, spent in parts.items()}
    total = sum(per_job.values())
    vanished = sum(spent.vanished for spent in parts.values())
    note = (
        ", ".join(f"{part} {per_job[part]:.3g} ms ({parts[part].processes} processes)" for part in SERVER_PARTS)
        + f"; {1000 / total:.0f} jobs/s per server core" * (total > 0)
        + (f"; {vanished} processes ended during the run, their CPU not counted" if vanished else "")
        + "; /proc utime+stime before and after the throughput run; nodes not counted"
    )
    return Result("server_cpu_per_job", total, "ms", "plain Celery: its Redis's CPU per task",
                  redis_per_task_ms, count, "<= 1 ms", note)  # fmt: skip


def baseline_throughput(live: Live, count: int) -> float:
    key = f"bench:done:{uuid.uuid4().hex}"
    started = time.monotonic()
    with baseline.app.producer_or_acquire() as producer:
        for _ in range(count):
            baseline.app.send_task(baseline.TASK, args=[live.script, key], queue=baseline.QUEUE, producer=producer)
    wait_until(lambda: live.broker.llen(key) >= count, 600, f"{count} baseline tasks", interval=THROUGHPUT_POLL_SECONDS)
    return count / (time.monotonic() - started)


def node_rss(live: Live, node: str) -> Result:
    """A node worker's resident memory while idle (after it has run jobs), beside the baseline worker's."""
    try:
        ours, theirs = live.stack.pss_mb(node), live.stack.pss_mb("baseline")
        pss = f"proportional set size {ours:.0f} MB (the baseline's {theirs:.0f})"
    except psutil.Error as exc:  # smaps of a process not ours: the sum of RSS alone
        pss = f"proportional set size not readable ({exc})"
    return Result("node_rss_mb", live.stack.rss_mb(node), "MB", "plain Celery worker, idle",
                  live.stack.rss_mb("baseline"), 1, "<= 150 MB",
                  f"after running the jobs above, its warm sandboxes kept; {pss}")  # fmt: skip
