"""Scenarios on the live system: real scheduler, real node workers, real jobs.

Jobs go in through the real submission path, `dctoolkit.jobs.submit.submit()`,
called in this process (so the numbers measure the system, not Python's
start-up of a `./dct submit` command); the baseline Celery worker gets the
same script through plain `send_task`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis
from django.contrib.auth.models import User

from dctoolkit.jobs.models import FINAL_STATES, Job, JobState
from dctoolkit.jobs.submit import FolderFiles, submit
from dctoolkit.stack import wait_until

from . import baseline
from .report import Result, median, percentile
from .stack import Stack

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


@dataclass
class Live:
    """What the live scenarios share: the stack, who submits, where the script is."""

    stack: Stack
    user: User
    folder: Path
    broker: redis.Redis

    @classmethod
    def prepare(cls, stack: Stack, user: User, workdir: Path, broker: redis.Redis) -> Live:
        return cls(stack, user, write_script(workdir), broker)

    @property
    def script(self) -> str:
        return str(self.folder / "true.sh")

    def submit(self, count: int = 1, node: str = "") -> list[Job]:
        text = "executable = true.sh\n" + (f"node = {node}\n" if node else "") + f"queue = {count}\n"
        return submit(text, "job.txt", self.user, FolderFiles(self.folder))

    def run_one(self, node: str = "") -> float:
        """Submit one trivial job and wait for it to end; returns ms from submit to finished."""
        started = time.monotonic()
        (job,) = self.submit(node=node)
        final = Job.objects.filter(id=job.id, state__in=FINAL_STATES)
        state = wait_until(
            lambda: final.values_list("state", flat=True).first(),
            JOB_TIMEOUT_SECONDS,
            f"job {job.id} to end",
            interval=LATENCY_POLL_SECONDS,
        )
        elapsed = (time.monotonic() - started) * 1000
        if state != JobState.SUCCEEDED:
            raise RuntimeError(f"bench: trivial job {job.id} ended {state}: {Job.objects.get(id=job.id).reason}")
        return elapsed

    def baseline_one(self) -> float:
        """The same script through the plain Celery worker; ms from send to done."""
        key = f"bench:done:{uuid.uuid4().hex}"
        started = time.monotonic()
        baseline.app.send_task(baseline.TASK, args=[self.script, key], queue=baseline.QUEUE)
        if self.broker.blpop([key], timeout=JOB_TIMEOUT_SECONDS) is None:
            raise RuntimeError("bench: the baseline Celery worker did not run its task")
        return (time.monotonic() - started) * 1000


def latency(live: Live, runs: int) -> list[Result]:
    """One trivial job at a time on an idle system; each run beside one baseline run."""
    live.run_one()  # warm both paths up
    live.baseline_one()
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(live.run_one())
        theirs.append(live.baseline_one())
    note = "submit() in-process -> succeeded, polled every 2 ms"
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


def throughput(live: Live, count: int) -> Result:
    """`queue = count` trivial jobs: jobs per second from submit to the last finish; then the baseline."""
    started = time.monotonic()
    jobs = live.submit(count)
    submission = jobs[0].submission_id
    remaining = Job.objects.filter(submission_id=submission).exclude(state__in=FINAL_STATES)
    wait_until(lambda: not remaining.exists(), 600, f"{count} jobs to end", interval=THROUGHPUT_POLL_SECONDS)
    ours = count / (time.monotonic() - started)
    failed = Job.objects.filter(submission_id=submission).exclude(state=JobState.SUCCEEDED).count()
    if failed:
        raise RuntimeError(f"bench: {failed} of {count} trivial jobs did not succeed")
    return Result("throughput", ours, "jobs/s", "plain Celery worker, same broker and concurrency",
                  baseline_throughput(live, count), count, ">= 0.5 x baseline and >= 100/s")  # fmt: skip


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
    return Result("node_rss_mb", live.stack.rss_mb(node), "MB", "plain Celery worker, idle",
                  live.stack.rss_mb("baseline"), 1, "<= 150 MB", "after running the jobs above")  # fmt: skip
