"""cli_status, cli_job, cli_submit: the cold start of `./dct status ID`, `./dct job ID --json` and
`./dct submit FILE --parsable`, as a workflow tool calls them for every job it watches or starts.

Each run is a fresh process (the bash script, Python, the settings, one
read of the database), wall time, the median of CLI_RUNS; the baseline is
`python -c pass` started the same way in the same run, the floor of any
command written in Python.  One run of each first, unmeasured, so that the
file cache and Python's bytecode cache are as a user's second call finds
them: PYTHONDONTWRITEBYTECODE (set on some build machines, never by
dctoolkit) is left out of the runs' environment, so that the bytecode is
written once instead of every module being compiled on every call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from bench.report import Result, median
from dctoolkit.accounts.identity import acting_user_name
from dctoolkit.jobs.models import Job, Submission

CLI_RUNS = 10


def cli_status(runs: int = CLI_RUNS) -> Result:
    """Median seconds of `runs` cold `./dct status ID` calls, beside `python -c pass`."""
    job_id = make_job()
    try:
        return _cold("cli_status", ["status", str(job_id)], runs, "<= 0.3 s", expect="queued")
    finally:
        Job.objects.filter(id=job_id).delete()


def cli_job(runs: int = CLI_RUNS) -> Result:
    """Median seconds of `runs` cold `./dct job ID --json` calls, beside `python -c pass`."""
    job_id = make_job()
    try:
        return _cold("cli_job", ["job", str(job_id), "--json"], runs, "", expect=f'"id": {job_id},')
    finally:
        Job.objects.filter(id=job_id).delete()


def cli_submit(folder: Path, runs: int = CLI_RUNS) -> Result:
    """Median seconds of `runs` cold `./dct submit FILE --parsable` calls (one job each), beside `python -c pass`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "true.sh").write_text("#!/bin/sh\ntrue\n")
    (folder / "true.sh").chmod(0o755)
    (folder / "job.txt").write_text("executable = true.sh\nhold = true\n")  # held: nothing runs meanwhile
    before = Job.objects.order_by("-id").values_list("id", flat=True).first() or 0
    try:
        return _cold("cli_submit", ["submit", str(folder / "job.txt"), "--parsable"], runs, "")
    finally:
        Job.objects.filter(id__gt=before).delete()


def _cold(name: str, args: list[str], runs: int, target: str, expect: str | None = None) -> Result:
    dct = Path(settings.BASE_DIR) / "dct"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    ours = timed_runs([str(dct), *args], runs, env, expect=expect)
    floor = timed_runs([sys.executable, "-c", "pass"], runs, env)
    return Result(
        name=name,
        value=median(ours),
        unit="s",
        baseline="python -c pass",
        baseline_value=median(floor),
        size=runs,
        target=target,
        note=f"median of {runs} cold runs (fresh processes), wall time, bytecode cached",
    )


def make_job() -> int:
    """A queued job of the user that `./dct status` acts for here (the OS user: the bench holds the key)."""
    user, _ = User.objects.get_or_create(username=acting_user_name(None, True, Path(settings.VAR_DIR)))
    sub = Submission.objects.create(owner=user, source_name="status.txt", text="executable = true.sh\n")
    job = Job.objects.create(
        submission=sub, owner=user, name="status", executable="true.sh", submitted_at=timezone.now()
    )
    return job.id


def timed_runs(argv: list[str], runs: int, env: dict[str, str], expect: str | None = None) -> list[float]:
    """Wall seconds of each of `runs` runs of `argv` (after one unmeasured); each must exit 0 (and print
    `expect`: the whole output, or a line of it when `expect` ends in a comma)."""
    seconds = []
    for attempt in range(runs + 1):
        started = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
        lines = [line.strip() for line in done.stdout.splitlines()] if expect and expect.endswith(",") else []
        printed = expect in lines if lines else done.stdout.strip() == expect
        if done.returncode != 0 or (expect is not None and not printed):
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout}{done.stderr}")
        if attempt:
            seconds.append(elapsed)
    return seconds
