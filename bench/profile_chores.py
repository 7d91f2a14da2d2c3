"""The scheduler's once-a-second chores, step by step: statements and CPU per round, idle and busy.

    python -m bench.profile_chores --db /tmp/chores.sqlite3 --redis-port 6399 [--finished 5000] [--rounds 50]
    python -m bench.profile_chores --db postgres://postgres@127.0.0.1:5432/dct_chores --redis-port 6399

The bench's throughput run as the chores see it: `--finished` ended jobs that
asked for no mail, each alone in its submission (the bench submits one file
per job), 20 queued jobs and 4 online nodes; no dependency, DAG, policy or
retention work.  Each step of `scheduler.Command.round(chores=True)` but the
pass (and the policies' every fifth second) is run `--rounds` times (after one to warm up); printed per round: the
statements, this process's CPU (SQLite's work included) and, on PostgreSQL,
the CPU of this connection's server process (from /proc/PID/schedstat, in
nanoseconds: no tick rounding).  `idle` is the same with no ended job.  Needs
a Redis on `--redis-port` (`redis-server --port N --save ''`).  Not part of
`./dct bench`: a tool for finding what a round of chores costs.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict


def run_ns(pid: int | None) -> int:
    """CPU nanoseconds process `pid` has run (this thread when None)."""
    if pid is None:
        return time.thread_time_ns()
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", required=True, help="a SQLite file, or a postgres:// URL (emptied first)")
    p.add_argument("--finished", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--redis-port", type=int, required=True)
    return p.parse_args()


def set_up(a: argparse.Namespace) -> None:
    from bench.profiling import django_on

    django_on(a.db, a.redis_port, "/tmp/dct-profile-chores")
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def fill(finished: int) -> None:
    """The situation: `finished` ended jobs without mail (one submission each), 20 queued, 4 nodes."""
    from django.utils import timezone

    from bench import synthetic
    from dctoolkit.jobs.models import Job, JobState, Submission

    synthetic.clear_jobs()
    (user,) = synthetic.make_users(1)
    synthetic.make_nodes(4)
    if finished:
        subs = Submission.objects.bulk_create(
            [Submission(owner=user, source_name="job.txt", text="") for _ in range(finished)], batch_size=900
        )
        now = timezone.now()
        Job.objects.bulk_create(
            [Job(submission=s, owner=user, name="true.sh", executable="true.sh", state=JobState.SUCCEEDED,
                 exit_code=0, attempts=1, submitted_at=now, started_at=now, finished_at=now, run_seconds=0.01,
                 cpu_seconds=0.01) for s in subs], batch_size=900,
        )  # fmt: skip
    queued = Submission.objects.create(owner=user, source_name="job.txt", text="", job_count=20)
    synthetic.add_queued([queued], 20)


def measure(rounds: int) -> dict[str, list[float]]:
    """Per step: [statements, this process's CPU ms, the server process's CPU ms], summed over `rounds`."""
    from django.db import connection
    from django.utils import timezone

    from dctoolkit.jobs.management.commands import scheduler
    from dctoolkit.jobs.scheduling import dispatch
    from dctoolkit.operations.passes import stats_client

    command = scheduler.Command()
    connection.ensure_connection()
    server = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            server = cursor.fetchone()[0]
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for i in range(rounds + 1):
        steps = [(step.__name__, step) for step in command.chore_steps() if step is not dispatch.schedule_pass]
        for name, step in [*steps, ("pass_stats", None)]:
            queries: list[str] = []

            def counted(execute, sql, *rest, queries=queries):
                queries.append(sql)
                return execute(sql, *rest)

            with connection.execute_wrapper(counted):
                mine, theirs = run_ns(None), run_ns(server) if server else 0
                if step is None:  # the statistics' write to Redis, one pass's worth
                    command.pass_stats.record(0.001, 0)
                    command.pass_stats.flush(stats_client())
                else:
                    step(timezone.now())
                mine, theirs = run_ns(None) - mine, (run_ns(server) - theirs) if server else 0
            if i:  # the first warms up
                t = totals[name]
                t[0] += len(queries)
                t[1] += mine / 1e6
                t[2] += theirs / 1e6
    return totals


def main() -> None:
    a = parse_args()
    set_up(a)
    from django.db import connection

    for label, finished in (("idle", 0), (f"busy ({a.finished} ended jobs)", a.finished)):
        fill(finished)
        totals = measure(a.rounds)
        print(f"{connection.vendor}, {label}, per round ({a.rounds} rounds):")
        print(f"  {'step':24} {'queries':>8} {'CPU ms':>8} {'server ms':>10}")
        for name, (queries, mine, theirs) in totals.items():
            print(f"  {name:24} {queries / a.rounds:8.1f} {mine / a.rounds:8.3f} {theirs / a.rounds:10.3f}")
        q, m, t = (sum(v[k] for v in totals.values()) / a.rounds for k in range(3))
        print(f"  {'all':24} {q:8.1f} {m:8.3f} {t:10.3f}")


if __name__ == "__main__":
    main()
