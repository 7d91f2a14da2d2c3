"""One scheduling pass profiled at a given queue size: wall, CPU, and each statement's time, CPU and pages.

    python -m bench.profile_pass --db /tmp/q1m.sqlite3 --size 1000000 --redis-port 6399 [--pragma SQL]
        [--profile [--sort tottime]]

The bench's synthetic scenario (1,000 nodes x 2 slots, 1,000 users, rows made
by the database), on a database file of your choosing that is kept between
runs (a million rows take a minute or two to make); `--no-migrate` leaves its
schema as it is, to compare an older checkout on the same file.  Pages are
what this process read and wrote (`/proc/self/io`, 4 KiB a page): SQLite's
page cache misses and its WAL writes, counts the machine's load does not
change.  Needs a Redis on `--redis-port` (`redis-server --port N --save ''`).
Not part of `./dct bench`: a tool for finding where a pass's time goes.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import re
import time

PAGE = 4096


def io_bytes(which: str) -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(which))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", required=True, help="a SQLite file, or a postgres:// URL")
    p.add_argument("--size", type=int, required=True, help="queued jobs (made once, kept in --db)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="cProfile of the passes, by cumulative time")
    p.add_argument("--sort", default="cumulative", help="the profile's order (pstats: cumulative, tottime, ...)")
    p.add_argument("--pragma", default="", help="SQL run on the connection first (PRAGMA cache_size=-65536; ...)")
    p.add_argument("--no-migrate", action="store_true")
    p.add_argument("--redis-port", type=int, required=True)
    return p.parse_args()


def set_up(a: argparse.Namespace) -> list[str]:
    """Django on --db, the nodes, users and queue made if missing; returns the nodes' names."""
    from bench.profiling import django_on

    django_on(a.db, a.redis_port, "/tmp/dct-profile-pass")
    from django.core.management import call_command
    from django.db import connection

    from bench import synthetic
    from dctoolkit.jobs.models import Job, Submission
    from dctoolkit.nodes.models import Node

    if not a.no_migrate:
        call_command("migrate", verbosity=0, interactive=False)
    users = synthetic.make_users(1000)
    nodes = [f"bench-n{i:04d}" for i in range(1000)]
    if Node.objects.filter(name__in=nodes).count() != len(nodes):
        nodes = synthetic.make_nodes(len(nodes))
    have = Job.objects.count()
    if have < a.size:
        subs = list(Submission.objects.order_by("id"))
        if len(subs) < len(users):
            subs = [Submission.objects.create(owner=u, source_name="job.txt", text="", job_count=0) for u in users]
        synthetic.generate_queued(subs, a.size - have)
    with connection.cursor() as cursor:
        for statement in a.pragma.split(";"):
            if statement.strip():
                cursor.execute(statement)
    return nodes


class Statements:
    """Each statement's count, wall and CPU seconds and bytes read, by its first 70 characters."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0])

    def __call__(self, execute, sql, params, many, context):
        wall, cpu, read = time.perf_counter(), time.thread_time(), io_bytes("rchar")
        try:
            return execute(sql, params, many, context)
        finally:
            st = self.stats[re.sub(r"\s+", " ", sql)[:70]]
            st[0] += 1
            st[1] += time.perf_counter() - wall
            st[2] += time.thread_time() - cpu
            st[3] += io_bytes("rchar") - read

    def print(self, passes: int) -> None:
        for sql, (count, wall, cpu, read) in sorted(self.stats.items(), key=lambda kv: -kv[1][1]):
            print(f"  {wall * 1000 / passes:7.1f} ms, CPU {cpu * 1000 / passes:6.1f} ms, "
                  f"{read / PAGE / passes:6.0f} pages read, {count / passes:5.1f}x  {sql}")  # fmt: skip


def main() -> None:
    a = parse_args()
    nodes = set_up(a)
    import redis
    from django.conf import settings
    from django.db import connection

    from bench import synthetic
    from dctoolkit.jobs.scheduling.dispatch import schedule_pass

    broker = redis.Redis.from_url(settings.REDIS_URL)
    statements = Statements()
    walls, cpus, pages = [], [], []
    prof = cProfile.Profile() if a.profile else None
    for i in range(a.repeats + 1):  # the first warms up
        now = synthetic.reset_queue(nodes, broker)
        if i == 1:
            statements.stats.clear()
        read, written = io_bytes("rchar"), io_bytes("wchar")
        cpu, wall = time.process_time(), time.perf_counter()
        with connection.execute_wrapper(statements):
            if prof and i:
                prof.enable()
            placed = schedule_pass(now)
            if prof and i:
                prof.disable()
        if placed != 2 * len(nodes):
            raise SystemExit(f"the pass placed {placed}, not {2 * len(nodes)}")
        if i:
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            pages.append(((io_bytes("rchar") - read) // PAGE, (io_bytes("wchar") - written) // PAGE))
    broker.delete(*nodes)
    walls.sort()
    cpus.sort()
    half = a.repeats // 2
    print(f"size={a.size} wall median {walls[half]:.0f} ms, CPU median {cpus[half]:.0f} ms, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"  pages read, written per pass: {pages}")
    statements.print(a.repeats)
    if prof:
        pstats.Stats(prof).sort_stats(a.sort).print_stats(35)


if __name__ == "__main__":
    main()
