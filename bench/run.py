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
    parser.add_argument("--only", default="", help="comma-separated result names or their prefixes")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
    import django

    django.setup()
    from .report import document, table

    sizes = Sizes.quick() if args.quick else Sizes()
    workdir = Path(os.environ["BENCH_WORKDIR"])
    only = Only.parse(args.only)
    machine_info, results = run_all(workdir, sizes, args.quick, only)
    out = document(machine_info, results)
    print(json.dumps(out, indent=2) if args.json else table(machine_info, results))
    return 0


@dataclass(frozen=True)
class Only:
    """Which scenarios to run: every one, or those whose result names start with one of `prefixes`."""

    prefixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Only:
        prefixes = tuple(p.strip() for p in text.split(",") if p.strip())
        unknown = [p for p in prefixes if not any(name.startswith(p) for name in RESULT_NAMES)]
        if unknown:
            raise SystemExit(
                f"bench: --only {', '.join(unknown)}: no such result; choose from {', '.join(RESULT_NAMES)}"
            )
        return cls(prefixes)

    def __call__(self, *names: str) -> bool:
        """True when any of `names` (one scenario's results) was asked for."""
        return not self.prefixes or any(n.startswith(p) for n in names for p in self.prefixes)


RESULT_NAMES = (
    *("throughput", "latency_p50", "latency_p95", "latency_p99", "sandbox_overhead", "node_rss_mb", "submit_10k"),
    *("schedule_pass_1k", "schedule_pass_10k", "schedule_pass_100k", "history_page_100k"),
)


def run_all(workdir: Path, sizes: Sizes, quick: bool, only: Only = Only()) -> tuple[dict, list]:
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from dctoolkit.stack import RedisServer

    from .report import machine

    server = RedisServer(
        workdir / "redis", port=int(os.environ["BENCH_REDIS_PORT"]), password=os.environ["BENCH_REDIS_PASSWORD"]
    )
    server.start()
    try:
        broker = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=BROKER_TIMEOUT_SECONDS)
        info = machine(broker.info("server")["redis_version"], quick)
        call_command("migrate", verbosity=0, interactive=False)
        settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every page without it
        results = live_scenarios(workdir, sizes, broker, only) + synthetic_scenarios(workdir, sizes, broker, only)
    finally:
        server.stop()
    return info, results


def live_scenarios(workdir: Path, sizes: Sizes, broker, only: Only) -> list:
    from django.contrib.auth.models import User

    from dctoolkit.nodes.models import Node

    from . import live
    from .stack import Stack

    user, _ = User.objects.get_or_create(username="bench")
    live.write_script(workdir)  # the synthetic scenarios submit it too
    if not only("throughput", "latency", "sandbox_overhead", "node_rss_mb"):
        return []
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
        ctx = live.Live.prepare(stack, user, workdir, broker)
        results = []
        if only("latency"):
            say(f"latency: {sizes.latency_runs} runs of one job at a time")
            results += live.latency(ctx, sizes.latency_runs)
        if only("sandbox_overhead"):
            Node.objects.filter(name=OPEN_NODE).update(drained=False)
            say(f"sandbox_overhead: {sizes.sandbox_runs} runs on each of {NODES[0]} and {OPEN_NODE}")
            results.append(live.sandbox_overhead(ctx, sizes.sandbox_runs, NODES[0], OPEN_NODE))
            Node.objects.filter(name=OPEN_NODE).update(drained=True)
        if only("throughput"):
            say(f"throughput: {sizes.throughput} jobs on {len(NODES)} nodes x {SLOTS} slots, then the baseline")
            results.insert(0, live.throughput(ctx, sizes.throughput))
        if only("node_rss_mb"):
            results.append(live.node_rss(ctx, NODES[0]))
        stack.check_alive()
        return results
    finally:
        stack.stop()
        Node.objects.all().delete()


def synthetic_scenarios(workdir: Path, sizes: Sizes, broker, only: Only) -> list:
    from django.contrib.auth.models import User

    from . import synthetic

    user = User.objects.get(username="bench")
    results = []
    if only("submit_10k"):
        say(f"submit_10k: {sizes.submit} jobs in one file, {SUBMIT_REPEATS} times")
        results.append(synthetic.submit_many(user, workdir / "jobs", sizes.submit, SUBMIT_REPEATS))
    names = dict(zip(("schedule_pass_1k", "schedule_pass_10k", "schedule_pass_100k"), sizes.schedule, strict=True))
    names = {name: size for name, size in names.items() if only(name)}
    if names:
        say(f"schedule_pass: queues of {', '.join(map(str, names.values()))} jobs, {sizes.repeats} passes each")
        results += synthetic.schedule_passes(names, sizes.registered_nodes, sizes.repeats, broker)
    if only("history_page_100k"):
        say(f"history_page_100k: {sizes.history} finished jobs")
        results.append(synthetic.history_page(sizes.history, sizes.repeats))
    return results


if __name__ == "__main__":
    sys.exit(main())
