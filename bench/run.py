"""The benchmark itself, run as a child process of `./dct bench` with a private environment.

    python -m bench.run [--quick] [--json]

The parent (the `bench` management command) chose a temporary folder, a
SQLite file in it, and a free port for Redis, and put them in this process's
environment before Django read its settings.  Here: start Redis, migrate,
start the scheduler, node workers and the baseline Celery worker, run each
scenario, stop everything, print the table (or one JSON document) on stdout.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sizes:
    throughput: int = 2000
    latency_runs: int = 100
    sandbox_runs: int = 30
    submit: int = 10_000
    schedule: tuple[int, int, int] = (1_000, 10_000, 100_000)
    history: int = 100_000
    repeats: int = 5
    registered_nodes: int = 100

    @classmethod
    def quick(cls) -> Sizes:
        return cls(200, 10, 5, 1_000, (100, 1_000, 10_000), 10_000, 3, 10)


NODES = ("node-1", "node-2")  # 2 nodes x 2 slots, sandboxed
SLOTS = 2
OPEN_NODE = "open-1"  # no bubblewrap on its PATH: runs jobs unfenced
SUBMIT_REPEATS = 3  # each takes seconds: the median of three
# Longer than the longest blocking read the bench makes (a job's timeout).
BROKER_TIMEOUT_SECONDS = 120


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
    import django

    django.setup()
    from .report import document, table

    sizes = Sizes.quick() if args.quick else Sizes()
    workdir = Path(os.environ["BENCH_WORKDIR"])
    machine_info, results = run_all(workdir, sizes, args.quick)
    out = document(machine_info, results)
    print(json.dumps(out, indent=2) if args.json else table(machine_info, results))
    return 0


def run_all(workdir: Path, sizes: Sizes, quick: bool) -> tuple[dict, list]:
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from dctoolkit.stack import RedisServer

    from .report import machine

    server = RedisServer(workdir / "redis", port=int(os.environ["BENCH_REDIS_PORT"]))
    server.start()
    try:
        broker = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=BROKER_TIMEOUT_SECONDS)
        info = machine(broker.info("server")["redis_version"], quick)
        call_command("migrate", verbosity=0, interactive=False)
        settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every page without it
        results = live_scenarios(workdir, sizes, broker) + synthetic_scenarios(workdir, sizes, broker)
    finally:
        server.stop()
    return info, results


def live_scenarios(workdir: Path, sizes: Sizes, broker) -> list:
    from django.contrib.auth.models import User

    from dctoolkit.nodes.models import Node

    from . import live
    from .stack import Stack

    stack = Stack(workdir)
    try:
        say("starting the scheduler, node workers and the baseline Celery worker")
        # Created drained, so that only the sandbox comparison sends it jobs.
        Node.objects.create(name=OPEN_NODE, drained=True)
        stack.start_scheduler()
        for name in NODES:
            stack.start_node(name, SLOTS)
        stack.start_node(OPEN_NODE, 1, sandbox=False)
        stack.start_baseline(len(NODES) * SLOTS)
        stack.wait_nodes([*NODES, OPEN_NODE])
        user, _ = User.objects.get_or_create(username="bench")
        ctx = live.Live.prepare(stack, user, workdir, broker)
        say(f"latency: {sizes.latency_runs} runs of one job at a time")
        results = live.latency(ctx, sizes.latency_runs)
        Node.objects.filter(name=OPEN_NODE).update(drained=False)
        say(f"sandbox_overhead: {sizes.sandbox_runs} runs on each of {NODES[0]} and {OPEN_NODE}")
        results.append(live.sandbox_overhead(ctx, sizes.sandbox_runs, NODES[0], OPEN_NODE))
        Node.objects.filter(name=OPEN_NODE).update(drained=True)
        say(f"throughput: {sizes.throughput} jobs on {len(NODES)} nodes x {SLOTS} slots, then the baseline")
        results.insert(0, live.throughput(ctx, sizes.throughput))
        results.append(live.node_rss(ctx, NODES[0]))
        stack.check_alive()
        return results
    finally:
        stack.stop()
        Node.objects.all().delete()


def synthetic_scenarios(workdir: Path, sizes: Sizes, broker) -> list:
    from django.contrib.auth.models import User

    from . import synthetic

    user = User.objects.get(username="bench")
    say(f"submit_10k: {sizes.submit} jobs in one file, {SUBMIT_REPEATS} times")
    results = [synthetic.submit_many(user, workdir / "jobs", sizes.submit, SUBMIT_REPEATS)]
    names = dict(zip(("schedule_pass_1k", "schedule_pass_10k", "schedule_pass_100k"), sizes.schedule, strict=True))
    say(f"schedule_pass: queues of {', '.join(map(str, sizes.schedule))} jobs, {sizes.repeats} passes each")
    results += synthetic.schedule_passes(names, sizes.registered_nodes, sizes.repeats, broker)
    say(f"history_page_100k: {sizes.history} finished jobs")
    results.append(synthetic.history_page(sizes.history, sizes.repeats))
    return results


if __name__ == "__main__":
    sys.exit(main())
