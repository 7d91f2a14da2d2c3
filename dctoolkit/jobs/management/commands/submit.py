"""./dct submit FILE... [--wait] [--json]"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand
from dctoolkit.jobs.models import FINAL_STATES, Job, JobState
from dctoolkit.jobs.serializers import jobs_payload
from dctoolkit.jobs.submission import SubmissionError
from dctoolkit.jobs.submit import FolderFiles, prepare, queue

# How often --wait looks at the jobs again.
WAIT_POLL_SECONDS = 0.2


class Command(DctCommand):
    help = "Queue the jobs of one or more submission files (nothing is queued if any file is bad)."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE", help="submission file(s)")
        parser.add_argument("--wait", action="store_true", help="show progress; exit with the job's exit status")

    def handle(self, *args, **options):
        user = self.acting_user()
        prepared = []
        for name in options["files"]:
            path = Path(name)
            try:
                text = path.read_text()
            except FileNotFoundError:
                raise CommandError(f"{name}: no such file; give the path of your submission file") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"{name}: cannot read it as text ({exc})") from None
            try:
                prepared.append(prepare(text, name, FolderFiles(path.resolve().parent)))
            except SubmissionError as exc:
                raise CommandError(str(exc)) from None
        jobs = [job for p in prepared for job in queue(p, user)]
        ids = [j.id for j in jobs]
        if not options["json"]:
            span = (
                f"{ids[0]}"
                if len(ids) == 1
                else f"{ids[0]}-{ids[-1]}"
                if ids == list(range(ids[0], ids[-1] + 1))
                else ", ".join(map(str, ids))
            )
            self.stdout.write(f"{len(ids)} job{'s' if len(ids) != 1 else ''} submitted: {span}")
        if options["wait"]:
            jobs = self.wait(ids, quiet=options["json"])
        if options["json"]:
            self.emit_json({"jobs": jobs_payload(self.load(ids), timezone.now())})
        if options["wait"]:
            sys.exit(exit_status(jobs))

    def load(self, ids: list[int]) -> list[Job]:
        return list(Job.objects.filter(id__in=ids).select_related("owner", "node").order_by("id"))

    def wait(self, ids: list[int], quiet: bool) -> list[Job]:
        seen: dict[int, tuple] = {}
        while True:
            jobs = self.load(ids)
            for job in jobs:
                key = (job.state, job.node_id)
                if seen.get(job.id) != key and not quiet:
                    self.stdout.write(progress_line(job))
                seen[job.id] = key
            if all(j.state in FINAL_STATES for j in jobs):
                return jobs
            time.sleep(WAIT_POLL_SECONDS)


def progress_line(job: Job) -> str:
    where = f" on {job.node.name}" if job.node_id and job.state in (JobState.DISPATCHED, JobState.RUNNING) else ""
    line = f"job {job.id}: {job.state}{where}"
    if job.state in FINAL_STATES:
        line += f" (exit status {job.exit_code})" if job.exit_code is not None else ""
        if job.run_seconds is not None:
            line += f" after {job.run_seconds:.1f}s"
        if job.reason:
            line += f": {job.reason}"
    return line


def exit_status(jobs: list[Job]) -> int:
    """The job's own exit status; the first non-zero of several; 1 when one ended without one."""
    for job in jobs:
        if job.state != JobState.SUCCEEDED:
            return job.exit_code if job.exit_code not in (None, 0) else 1
    return 0
