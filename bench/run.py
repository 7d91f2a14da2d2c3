"""The benchmark itself, run as a child process of `./dct bench` with a private environment.

    python -m bench.run [--quick] [--json] [--only NAMES] [--database auto|none|URL]

The parent (the `bench` management command) chose a temporary folder, a
SQLite file in it, and a free port for Redis, and put them in this process's
environment before Django read its settings.  Here: start Redis, migrate,
start the scheduler, node workers and the baseline Celery worker, run each
scenario, stop everything, print the table (or one JSON document) on stdout.
With a PostgreSQL server (`--database`, see `bench/postgres.py`) the live
scenarios run again on a throwaway database there, as a second bench.
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
    submit: int = 100_000
    schedule: tuple[int, int, int] = (10_000, 100_000, 1_000_000)
    history: int = 1_000_000
    repeats: int = 5
    registered_nodes: int = 1_000  # x 2 slots, for schedule_pass_*: 2,000 placements a pass
    users: int = 1_000
    cli_runs: int = 10  # cli_job, cli_submit (cli_status is always the median of 10: the measure)
    fleet: int = 50  # many_nodes: one-slot node workers
    fleet_window: float = 30.0  # seconds of idle heartbeating measured, with a few nodes and with the fleet
    fleet_jobs: int = 1000
    cancel: int = 10_000
    # schedule_pass_waiting and _requirements: a queue of this many beside 100 nodes and 100 users.
    side_queue: int = 100_000
    side_nodes: int = 100

    @classmethod
    def quick(cls) -> Sizes:
        return cls(200, 10, 5, 1_000, (100, 1_000, 10_000), 10_000, 3, 10, 10, cli_runs=3, fleet=10, fleet_window=10.0,
                   fleet_jobs=100, cancel=1_000, side_queue=10_000, side_nodes=10)  # fmt: skip


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
    parser.add_argument("--database", default="auto", help="a PostgreSQL server's URL, auto or none")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
    import django

    django.setup()
    from bench.report import document, table

    sizes = Sizes.quick() if args.quick else Sizes()
    workdir = Path(os.environ["BENCH_WORKDIR"])
    only = Only.parse(args.only)
    from bench import postgres

    server = postgres.choose(args.database, postgres.answers) if only(*postgres.POSTGRES_NAMES) else ""
    machine_info, results = run_all(workdir, sizes, args.quick, only, server)
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


# The results of the scenarios that run the live stack (scheduler, nodes, baseline worker).
LIVE_RESULTS = ("throughput", "server_cpu_per_job", "latency", "sandbox_overhead", "metrics_scrape_throughput",
                "node_rss_mb")  # fmt: skip
FLEET_RESULTS = ("many_nodes_heartbeat_cost", "many_nodes_throughput", "many_nodes_node_rss_mb")
RESULT_NAMES = (
    *("throughput", "server_cpu_per_job", "latency_p50", "latency_p95", "latency_p99"),
    *("sandbox_overhead", "metrics_scrape_throughput", "node_rss_mb", *FLEET_RESULTS),
    *("throughput_postgres", "server_cpu_per_job_postgres"),
    *("latency_postgres_p50", "latency_postgres_p95", "latency_postgres_p99"),
    *(f"{name}_postgres" for name in FLEET_RESULTS),
    "schedule_pass_postgres_100k",
    "submit_100k",
    "cancel_10k",
    "schedule_pass_waiting",
    "schedule_pass_requirements",
    *("schedule_pass_10k", "schedule_pass_100k", "schedule_pass_1m", "schedule_pass_per_placement"),
    *("scheduler_rss_1m", "history_page_1m", "cli_status"),
    *("cli_job", "cli_submit"),
)


def run_all(workdir: Path, sizes: Sizes, quick: bool, only: Only = Only(), postgres_url: str = "") -> tuple[dict, list]:
    """Every scenario `only` names; the live ones again on `postgres_url`'s server when one is given."""
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from bench.report import machine
    from dctoolkit.dev.stack import RedisServer

    server = RedisServer(
        workdir / "redis", port=int(os.environ["BENCH_REDIS_PORT"]), password=os.environ["BENCH_REDIS_PASSWORD"]
    )
    server.start()
    try:
        broker = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=BROKER_TIMEOUT_SECONDS)
        info = machine(broker.info("server")["redis_version"], quick)
        call_command("migrate", verbosity=0, interactive=False)
        settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every page without it
        results = live_scenarios(workdir, sizes, broker, only, server.proc.pid if server.proc else 0)
        if only(*FLEET_RESULTS):
            from django.contrib.auth.models import User

            from bench.fleet import many_nodes

            say(f"many_nodes: {sizes.fleet} one-slot node workers, {sizes.fleet_jobs} jobs over them")
            user = User.objects.get_or_create(username="bench")[0]
            pid = server.proc.pid if server.proc else 0
            results += many_nodes(workdir, user, broker, pid, sizes.fleet, sizes.fleet_window, sizes.fleet_jobs)
        if postgres_url:
            from bench import postgres

            info["postgres"], again = postgres.run_on(postgres_url, postgres.child_only(only), quick, workdir / "pg")
            results += again
        results += synthetic_scenarios(workdir, sizes, broker, only)
    finally:
        server.stop()
    return info, results


def live_scenarios(workdir: Path, sizes: Sizes, broker, only: Only, redis_pid: int) -> list:
    from django.contrib.auth.models import User

    from bench import live
    from bench.stack import Stack
    from dctoolkit.nodes.models import Node

    user, _ = User.objects.get_or_create(username="bench")
    live.write_script(workdir)  # the synthetic scenarios submit it too
    if not only(*LIVE_RESULTS):
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
        ctx = live.Live.prepare(stack, user, workdir, broker, redis_pid)
        results = []
        if only("latency"):
            say(f"latency: {sizes.latency_runs} runs of one job at a time")
            results += live.latency(ctx, sizes.latency_runs)
            say(f"latency: median ms from the submit() call: {live.Phases.medians(ctx.phases)}")
        if only("sandbox_overhead"):
            Node.objects.filter(name=OPEN_NODE).update(drained=False)
            say(f"sandbox_overhead: {sizes.sandbox_runs} runs on each of {NODES[0]} and {OPEN_NODE}")
            results.append(live.sandbox_overhead(ctx, sizes.sandbox_runs, NODES[0], OPEN_NODE))
            Node.objects.filter(name=OPEN_NODE).update(drained=True)
        if only("throughput", "server_cpu_per_job"):
            say(f"throughput: {sizes.throughput} jobs on {len(NODES)} nodes x {SLOTS} slots, then the baseline")
            results[:0] = live.throughput(ctx, sizes.throughput, NODES)
        if only("metrics_scrape_throughput"):
            say(f"metrics_scrape_throughput: {sizes.throughput} jobs three times, the second scraped every second")
            results.append(live.metrics_scrape_throughput(ctx, sizes.throughput))
        if only("node_rss_mb"):
            results.append(live.node_rss(ctx, NODES[0]))
        stack.check_alive()
        return results
    finally:
        stack.stop()
        Node.objects.all().delete()


def synthetic_scenarios(workdir: Path, sizes: Sizes, broker, only: Only) -> list:
    from django.contrib.auth.models import User

    from bench import synthetic

    user = User.objects.get(username="bench")
    results = []
    if only("submit_100k"):
        say(f"submit_100k: {sizes.submit} jobs in one file, {SUBMIT_REPEATS} times")
        results.append(synthetic.submit_many(user, workdir / "jobs", sizes.submit, SUBMIT_REPEATS))
    if only("cancel_10k"):
        say(f"cancel_10k: a batch of {sizes.cancel} jobs cancelled in one call, {SUBMIT_REPEATS} times")
        results.append(synthetic.cancel_batch(user, sizes.cancel, SUBMIT_REPEATS))
    names = dict(zip(("schedule_pass_10k", "schedule_pass_100k", "schedule_pass_1m"), sizes.schedule, strict=True))
    whole = only("schedule_pass_per_placement", "scheduler_rss_1m")  # these two come from the whole series
    names = {name: size for name, size in names.items() if whole or only(name)}
    if names:
        say(
            f"schedule_pass: queues of {', '.join(map(str, names.values()))} jobs, {sizes.repeats} passes each, "
            f"{sizes.registered_nodes} nodes, {sizes.users} users"
        )
        results += synthetic.schedule_passes(names, sizes.registered_nodes, sizes.users, sizes.repeats, broker)
    if only("schedule_pass_waiting"):
        size, waiting = sizes.side_queue, sizes.side_queue // 10
        say(f"schedule_pass_waiting: a queue of {size} jobs beside {waiting} waiting on a dependency")
        results.append(synthetic.waiting_beside_queue(size, waiting, sizes.side_nodes, sizes.repeats, broker))
    if only("schedule_pass_requirements"):
        size = sizes.side_queue
        say(f"schedule_pass_requirements: a queue of {size} jobs, each with ClassAd requirements and rank")
        results.append(synthetic.requirements_beside_plain(size, sizes.side_nodes, sizes.repeats, broker))
    if only("history_page_1m"):
        say(f"history_page_1m: {sizes.history} finished jobs")
        results.append(synthetic.history_page(sizes.history, sizes.repeats))
    if only("cli_status"):
        from bench.cli import CLI_RUNS, cli_status

        say(f"cli_status: {CLI_RUNS} cold runs of ./dct status ID, and of python -c pass")
        results.append(cli_status())
    if only("cli_job"):
        from bench.cli import cli_job

        say(f"cli_job: {sizes.cli_runs} cold runs of ./dct job ID --json, and of python -c pass")
        results.append(cli_job(sizes.cli_runs))
    if only("cli_submit"):
        from bench.cli import cli_submit

        say(f"cli_submit: {sizes.cli_runs} cold runs of ./dct submit FILE --parsable, and of python -c pass")
        results.append(cli_submit(workdir / "cli-submit", sizes.cli_runs))
    return results


if __name__ == "__main__":
    sys.exit(main())
