"""`many_nodes`: a fleet of one-slot node workers on this machine, as a lab with many small machines has.

Its own stack (scheduler, `count` node workers started with no warm sandbox
kept, a raw-Celery worker of the same concurrency), after the other live
scenarios have stopped theirs.  Three rows:

- `many_nodes_heartbeat_cost`: the server's CPU (scheduler, the database
  server's backends, Redis: as `server_cpu_per_job` counts it) per node per
  second while the fleet is idle and heartbeating, beside the same figure
  with only the first few nodes up, measured just before.  It counts the
  idle server's fixed cost too (an upper bound of a heartbeat's own); a
  ratio under 1 says that cost is shared by more nodes and what the nodes
  add is small beside it.  The note has both totals.  On SQLite the nodes
  write their heartbeats themselves, and no database server counts them.
- `many_nodes_throughput`: a batch of trivial jobs spread over the fleet,
  beside the raw-Celery worker running as many at once.
- `many_nodes_node_rss_mb`: the median idle node's resident memory after the
  batch, beside the raw-Celery worker's.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from bench import live
from bench.report import Result, median
from bench.stack import PYTHON, Stack
from dctoolkit.operations.passes import read_stats

FEW = 5  # the nodes up during the first idle window, the baseline of the heartbeat cost
FLEET_START_TIMEOUT_SECONDS = 600  # fifty Django workers importing at once on two cores


def many_nodes(workdir: Path, user: User, broker: redis.Redis, redis_pid: int, count: int, window: float,
               jobs: int) -> list[Result]:  # fmt: skip
    from dctoolkit.nodes.models import Node

    wanted, count = count, fleet_size(count)
    stack = Stack(workdir)
    names = [f"fleet-{i}" for i in range(1, count + 1)]
    try:
        stack.start_scheduler()
        for name in names[:FEW]:
            start_node(stack, name)
        stack.wait_nodes(names[:FEW], FLEET_START_TIMEOUT_SECONDS)
        ctx = live.Live.prepare(stack, user, workdir, broker, redis_pid)
        few = idle_cost(ctx, window)
        for name in names[FEW:]:
            start_node(stack, name)
        stack.wait_nodes(names, FLEET_START_TIMEOUT_SECONDS)
        time.sleep(window / 2)  # the start-up's last writes and passes out of the window
        many = idle_cost(ctx, window)
        stack.start_baseline(count)
        server_before, passes_before = live.server_cpu(ctx), read_stats(broker) or {}
        ours = live.run_batch(ctx, jobs)
        server_ms = live.server_cpu_total_ms(server_before, live.server_cpu(ctx)) / jobs
        theirs = live.baseline_throughput(ctx, jobs)
        passes = live.passes_per_job(passes_before, read_stats(broker) or {}, jobs)
        time.sleep(2)  # the last job's clean-up
        rss = median([stack.rss_mb(name) for name in names])
        baseline_rss = stack.rss_mb("baseline")
        stack.check_alive()
    finally:
        stack.stop()
        Node.objects.filter(name__in=names).delete()
    where = "database backends" if connection.vendor == "postgresql" else "no database server (SQLite: the nodes write)"
    return [
        Result("many_nodes_heartbeat_cost", many / count / window, "ms/node/s", f"the same with {FEW} nodes up",
               few / FEW / window, count, "report",
               f"server CPU (scheduler, {where}, Redis) over {window:g} s idle: {many:.0f} ms with {count} "
               f"nodes, {few:.0f} ms with {FEW}; heartbeats every {settings.DCT_HEARTBEAT_SECONDS} s"
               + (f"; {count} nodes, not {wanted}: the server's max_connections leaves room for no more "
                  f"({CONNECTIONS_PER_NODE} connections a node)" if count < wanted else "")),
        Result("many_nodes_throughput", ours, "jobs/s", f"plain Celery worker, {count} at once", theirs, jobs,
               "report",
               f"{jobs} trivial jobs over {count} one-slot nodes; server CPU {server_ms:.3g} ms a job; {passes}"),
        Result("many_nodes_node_rss_mb", rss, "MB", "plain Celery worker, idle", baseline_rss, count,
               "<= 120 MB", "median node worker and its children, idle after the batch, DCT_WARM_SANDBOXES=0"),
    ]  # fmt: skip


# Database connections each one-slot node holds (README, "Database connections": one a slot plus two), and those kept
# free for the scheduler, the bench and anyone else on the server.
CONNECTIONS_PER_NODE = 3
CONNECTIONS_SPARE = 20


def fleet_size(wanted: int) -> int:
    """`wanted`, or fewer on a PostgreSQL server whose max_connections would refuse that many nodes."""
    if connection.vendor != "postgresql":
        return wanted
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity")
        (free,) = cursor.fetchone()
    return max(FEW + 1, min(wanted, (free - CONNECTIONS_SPARE) // CONNECTIONS_PER_NODE))


def start_node(stack: Stack, name: str) -> None:
    stack.start(name, [PYTHON, "worker_entry.py", "--node", name, "--slots", "1"], {"DCT_WARM_SANDBOXES": "0"})


def idle_cost(ctx: live.Live, window: float) -> float:
    """The server's CPU over `window` seconds of idle heartbeating, in ms."""
    before = live.server_cpu(ctx)
    time.sleep(window)
    return live.server_cpu_total_ms(before, live.server_cpu(ctx))
