"""./dct submit FILE... [--wait] [--json]"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand
from dctoolkit.jobs.models import FINAL_STATES, Job, JobState
from dctoolkit.jobs.serializers import job_dict, jobs_payload
from dctoolkit.jobs.submission import (
    MAX_SUBMISSION_BYTES,
    SubmissionError,
    parse_submission,
    submission_too_big_message,
)
from dctoolkit.jobs.submit import FolderFiles, check_files, prepare, queue
from dctoolkit.remote import upload_names

# How often --wait looks at the jobs again (through the API: less often).
WAIT_POLL_SECONDS = 0.2
REMOTE_WAIT_POLL_SECONDS = 1.0


class Command(DctCommand):
    help = "Queue the jobs of one or more submission files (nothing is queued if any file is bad)."
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE", help="submission file(s)")
        parser.add_argument("--wait", action="store_true", help="show progress; exit with the job's exit status")

    def handle(self, *args, **options):
        sources = [read_submission(name) for name in options["files"]]
        rows = self.submit_remotely(sources) if self.remote else self.submit_locally(sources)
        ids = [r["id"] for r in rows]
        if not options["json"]:
            self.stdout.write(f"{len(ids)} job{'s' if len(ids) != 1 else ''} submitted: {span(ids)}")
        if options["wait"]:
            try:
                rows = self.wait(rows, quiet=options["json"])
            except KeyboardInterrupt:
                raise CommandError("stopped waiting; the jobs go on ('./dct jobs' shows them)") from None
        if options["json"]:
            if not self.remote:
                rows = jobs_payload(self.load(ids), timezone.now())
            self.emit_json({"jobs": rows})
        if options["wait"]:
            sys.exit(exit_status(rows))

    def submit_locally(self, sources: list[tuple[str, str]]) -> list[dict]:
        user = self.acting_user()
        prepared = []
        for text, name in sources:
            try:
                prepared.append(prepare(text, name, FolderFiles(Path(name).resolve().parent)))
            except SubmissionError as exc:
                raise CommandError(str(exc)) from None
        jobs = [job for p in prepared for job in queue(p, user)]
        return [job_dict(j, timezone.now()) for j in self.load([j.id for j in jobs])]

    def submit_remotely(self, sources: list[tuple[str, str]]) -> list[dict]:
        """Check every file here first (same messages as locally), then upload each submission."""
        uploads = []
        for text, name in sources:
            folder = FolderFiles(Path(name).resolve().parent)
            try:
                refs = check_files(parse_submission(text, name, max_queue=settings.DCT_MAX_QUEUE), name, folder)
            except SubmissionError as exc:
                raise CommandError(str(exc)) from None
            uploads.append((text, name, upload_names(refs, folder)))
        # mypy: self.remote is set: handle() takes the remote path only then.
        return [row for text, name, files in uploads for row in self.remote.submit(text, name, files)]  # type: ignore[union-attr]

    def load(self, ids: list[int]) -> list[Job]:
        return list(Job.objects.filter(id__in=ids).select_related("owner", "node").order_by("id"))

    def fetch(self, rows: list[dict]) -> list[dict]:
        """The jobs as they are now."""
        if self.remote:
            wanted = {r["id"] for r in rows}
            found = []
            for sub in sorted({r["submission"] for r in rows}):
                found += self.remote.jobs({"submission": sub}, limit=len(wanted))
            return sorted((r for r in found if r["id"] in wanted), key=lambda r: r["id"])
        now = timezone.now()
        return [job_dict(j, now) for j in self.load([r["id"] for r in rows])]

    def wait(self, rows: list[dict], quiet: bool) -> list[dict]:
        seen: dict[int, tuple] = {}
        pause = REMOTE_WAIT_POLL_SECONDS if self.remote else WAIT_POLL_SECONDS
        while True:
            rows = self.fetch(rows)
            for row in rows:
                key = (row["state"], row["node"])
                if seen.get(row["id"]) != key and not quiet:
                    self.stdout.write(progress_line(row))
                seen[row["id"]] = key
            if all(r["state"] in FINAL_STATES for r in rows):
                return rows
            time.sleep(pause)


def read_submission(name: str) -> tuple[str, str]:
    """The submission file's text and the name it is reported under."""
    try:
        with open(name, "rb") as f:
            # Never the whole of a 200 MB file: one byte past the limit is enough to refuse it.
            data = f.read(MAX_SUBMISSION_BYTES + 1)
        if len(data) > MAX_SUBMISSION_BYTES:
            size = os.stat(name).st_size
            raise CommandError(f"{name}: {submission_too_big_message(size)}")
        return data.decode(), name
    except FileNotFoundError:
        raise CommandError(f"{name}: no such file; give the path of your submission file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{name}: cannot read it as text ({exc})") from None


def span(ids: list[int]) -> str:
    """`7`, `7-9`, or `7, 9, 12`."""
    if len(ids) == 1:
        return str(ids[0])
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}-{ids[-1]}"
    return ", ".join(map(str, ids))


def progress_line(job: dict) -> str:
    """One line of --wait progress for a job (a job dict, as the API and --json shape it)."""
    where = f" on {job['node']}" if job["node"] and job["state"] in (JobState.DISPATCHED, JobState.RUNNING) else ""
    line = f"job {job['id']}: {job['state']}{where}"
    if job["state"] in FINAL_STATES:
        line += f" (exit status {job['exit_code']})" if job["exit_code"] is not None else ""
        if job["run_seconds"] is not None:
            line += f" after {job['run_seconds']:.1f}s"
        if job["reason"]:
            line += f": {job['reason']}"
    return line


def exit_status(jobs: list[dict]) -> int:
    """The job's own exit status; the first non-zero of several; 1 when one ended without one."""
    for job in jobs:
        if job["state"] != JobState.SUCCEEDED:
            return job["exit_code"] if job["exit_code"] not in (None, 0) else 1
    return 0
