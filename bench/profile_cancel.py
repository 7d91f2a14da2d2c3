"""One bulk cancel profiled: `POST /api/submissions/{id}/cancel/` of a queued batch, the answer included.

    python -m bench.profile_cancel --db /tmp/cancel.sqlite3 --redis-port 6399 [--count 10000] [--profile]

The bench's `cancel_10k` (`bench.synthetic.cancel_batch`) on a database of your
choosing, each call's wall and CPU time (`time.process_time`: this process's,
which on SQLite includes the database's work and which the machine's load
changes far less than the wall time), and each statement's time.  Needs a Redis
on `--redis-port` (the scheduler's wake-up goes there).  Not part of `./dct bench`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", required=True, help="a SQLite file, or a postgres:// URL")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="cProfile of the calls, by cumulative time")
    p.add_argument("--redis-port", type=int, required=True)
    a = p.parse_args()
    from bench.profiling import django_on

    django_on(a.db, a.redis_port, "/tmp/dct-profile-cancel")
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from bench import synthetic
    from bench.profile_pass import Statements
    from dctoolkit.jobs.models import Submission

    call_command("migrate", verbosity=0, interactive=False)
    user, _ = User.objects.get_or_create(username="bench")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    statements = Statements()
    prof = cProfile.Profile() if a.profile else None
    walls, cpus = [], []
    for i in range(a.repeats + 1):  # the first warms up
        synthetic.clear_jobs()
        synthetic.bare_insert(user, a.count)
        url = f"/api/submissions/{Submission.objects.get().id}/cancel/"
        if i == 1:
            statements.stats.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        with connection.execute_wrapper(statements):
            if prof and i:
                prof.enable()
            response = client.post(url)
            if prof and i:
                prof.disable()
        if i:
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
        if response.status_code != 200 or len(response.json()["jobs"]) != a.count:
            raise SystemExit(f"the cancel answered {response.status_code}")
    synthetic.clear_jobs()
    walls.sort()
    cpus.sort()
    half = a.repeats // 2
    print(f"count={a.count} wall median {walls[half]:.0f} ms (min {walls[0]:.0f}), CPU median {cpus[half]:.0f} ms "
          f"(min {cpus[0]:.0f}), load {os.getloadavg()[0]:.1f}")  # fmt: skip
    statements.print(a.repeats)
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
