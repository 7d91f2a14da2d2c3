"""./dct bench [--quick] [--json] [--only NAMES] [--database URL|none]: the benchmark suite, on a private stack
it starts and stops itself.

The measuring runs in a child process (`python -m bench.run`) whose
environment points at a temporary folder: its own SQLite file, its own
Redis on a free port, its own storage.  Your database, Redis and files are
never touched.  The live scenarios run again on a PostgreSQL server (the
one on 127.0.0.1:5432 when it answers, or `--database URL`), in a database
the bench creates there and drops.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from dctoolkit.cli import DctCommand
from dctoolkit.dev.stack import free_port, redis_url

# A full run takes about half an hour on a loaded two-core machine (it makes a million-job queue and a
# million-job history, and submits 100,000 jobs six times); --quick a few minutes.
TIMEOUT_SECONDS = 3600
# Settings of yours the bench's processes keep (every other DCT_ one is left out): DCT_CGROUPS=off measures
# the path without the jobs' cgroups, DCT_DB_PREPARE=0 PostgreSQL without prepared statements (as behind
# PgBouncer before 1.21).
PASSED_SETTINGS = ("DCT_CGROUPS", "DCT_DB_PREPARE")


class Command(DctCommand):
    help = "Run the benchmark suite on a private Redis, database and node workers; print a table or --json."
    user_option = False

    def add_arguments(self, parser):
        parser.add_argument("--quick", action="store_true", help="every scenario at a tenth of its size (< 1 minute)")
        parser.add_argument(
            "--only",
            default="",
            metavar="NAMES",
            help="run only the scenarios whose results are named (or start with) these, comma-separated: "
            "throughput, server_cpu_per_job, latency, sandbox_overhead, node_rss_mb, submit_100k, schedule_pass, "
            "scheduler_rss_1m, history_page_1m, cli_status, cli_job, cli_submit (a live one's PostgreSQL rows: "
            "throughput_postgres, latency_postgres_p50, ...)",
        )
        parser.add_argument(
            "--database",
            default="auto",
            metavar="URL",
            help="also run throughput and latency on this PostgreSQL server (postgres://USER@HOST:PORT/DB), in a "
            "throwaway database the bench creates and drops; default: the server on 127.0.0.1:5432 if one "
            "answers; none: SQLite only",
        )

    def handle(self, *args, **options):
        workdir = Path(tempfile.mkdtemp(prefix="dct-bench-"))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench.run", *(["--quick"] if options["quick"] else []),
                 *(["--json"] if options["json"] else []), *(["--only", options["only"]] if options["only"] else []),
                 "--database", options["database"]],
                cwd=settings.BASE_DIR,
                env=private_env(workdir),
                stdout=subprocess.PIPE,
                text=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise CommandError(f"the benchmark ran past {TIMEOUT_SECONDS}s and was stopped") from None
        if done.returncode != 0:
            # Kept, so that the processes' logs can be read.
            raise CommandError(
                f"the benchmark failed (exit status {done.returncode}); see the messages above "
                f"and the process logs in {workdir / 'logs'}"
            )
        shutil.rmtree(workdir, ignore_errors=True)
        self.stdout.write(done.stdout.rstrip("\n"))


def private_env(workdir: Path) -> dict[str, str]:
    """Our environment without any dctoolkit setting, pointed at `workdir`'s own services."""
    port, password = free_port(), secrets.token_urlsafe(24)  # its Redis is configured as ./dct up's
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DCT_", "DATABASE_URL", "REDIS_URL", "EMAIL_"))}
    keep.update({k: os.environ[k] for k in PASSED_SETTINGS if k in os.environ})
    return {
        **keep,
        "DCT_VAR": str(workdir / "var"),
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "REDIS_URL": redis_url(port, password),
        "BENCH_REDIS_PORT": str(port),
        "BENCH_REDIS_PASSWORD": password,
        "BENCH_WORKDIR": str(workdir),
        "SECRET_KEY": "bench-only",
        "PYTHONUNBUFFERED": "1",
    }
