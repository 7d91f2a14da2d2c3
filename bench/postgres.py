"""The live scenarios, and one scheduling pass at 100,000 queued, again on a PostgreSQL server:
`./dct bench --database URL`.

The bench makes a throwaway database of its own on that server, runs a
second bench (`python -m bench.run`, with its own Redis, scheduler, nodes and
raw-Celery baseline) against it, renames its rows (`throughput` ->
`throughput_postgres`, `latency_p50` -> `latency_postgres_p50`, `schedule_pass_100k` ->
`schedule_pass_postgres_100k`, ...) and drops
the database.  By default (`--database auto`) this happens when a PostgreSQL
answers on 127.0.0.1:5432; `--database none` turns it off.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.report import Result

LOCAL_URL = "postgres://postgres@127.0.0.1:5432/postgres"
# The scenarios run again on PostgreSQL, by the names of their results (on SQLite).
LIVE_NAMES = ("throughput", "server_cpu_per_job", "latency_p50", "latency_p95", "latency_p99",
              "many_nodes_heartbeat_cost", "many_nodes_throughput", "many_nodes_node_rss_mb",
              "schedule_pass_100k")  # fmt: skip


def renamed(name: str) -> str:
    """A result's name on PostgreSQL: the engine goes before a percentile or a queue's size, after anything else."""
    head, _, tail = name.rpartition("_")
    return f"{head}_postgres_{tail}" if head in ("latency", "schedule_pass") else f"{name}_postgres"


POSTGRES_NAMES = tuple(renamed(n) for n in LIVE_NAMES)


def choose(option: str, answers: Callable[[str], bool]) -> str:
    """The server's URL to run on (`option` is `auto`, `none` or a URL), or "" for none."""
    if option == "none":
        return ""
    if option == "auto":
        return LOCAL_URL if answers(LOCAL_URL) else ""
    if not option.startswith(("postgres://", "postgresql://")):
        raise SystemExit(
            f"bench: --database {option}: not a PostgreSQL URL; give postgres://USER@HOST:PORT/DB, auto or none"
        )
    return option


def answers(url: str) -> bool:
    """True when a PostgreSQL server takes a connection at `url` within two seconds."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def child_only(wanted: Callable[..., bool]) -> str:
    """The `--only` of the run on PostgreSQL: the live scenarios whose renamed rows were asked for."""
    chosen = []
    if wanted(*(renamed(n) for n in ("throughput", "server_cpu_per_job"))):
        chosen.append("throughput")
    if wanted(*(renamed(n) for n in LIVE_NAMES if n.startswith("latency"))):
        chosen.append("latency")
    if wanted(*(renamed(n) for n in LIVE_NAMES if n.startswith("many_nodes"))):
        chosen.append("many_nodes")
    if wanted(renamed("schedule_pass_100k")):
        chosen.append("schedule_pass_100k")
    return ",".join(chosen)


class ThrowawayDatabase:
    """A database of its own on `server_url`'s server, created here and dropped by `drop()`."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"dct_bench_{uuid.uuid4().hex[:10]}"
        self.url = server_url.split("?", 1)[0].rsplit("/", 1)[0] + "/" + self.name
        self._admin(f"CREATE DATABASE {self.name}")
        if os.environ.get("BENCH_POSTGRES_LOG_STATEMENTS") == "1":  # for bench/statements.py
            self._admin(f"ALTER DATABASE {self.name} SET log_min_duration_statement = 0")

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(sql)

    def drop(self) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def run_on(server_url: str, only: str, quick: bool, workdir: Path) -> tuple[str, list[Result]]:
    """Run the live scenarios `only` on a throwaway database of `server_url`; returns (server, results)."""
    from dctoolkit.jobs.management.commands.bench import private_env

    workdir.mkdir(parents=True, exist_ok=True)
    db = ThrowawayDatabase(server_url)
    print(f"bench: {only} again on PostgreSQL, in the throwaway database {db.url}", file=sys.stderr, flush=True)
    try:
        env = {**private_env(workdir), "DATABASE_URL": db.url}
        argv = [sys.executable, "-m", "bench.run", "--json", "--database", "none", "--only", only]
        done = subprocess.run(
            [*argv, *(["--quick"] if quick else [])],
            cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"bench: the run on PostgreSQL ({db.url}) failed (exit status {done.returncode}); "
                f"see the messages above and the process logs in {workdir / 'logs'}"
            )
        out = json.loads(done.stdout)
    finally:
        db.drop()
    fields = {f.name for f in dataclasses.fields(Result)}
    results = [
        Result(**{**{k: v for k, v in r.items() if k in fields}, "name": renamed(r["name"])})
        for r in out["results"]
        if renamed(r["name"]) in POSTGRES_NAMES  # not schedule_passes' per-placement and memory rows
    ]
    return out["machine"]["database"], results
