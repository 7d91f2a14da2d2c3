"""./dct results ID [--dest DIR]"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.management.base import CommandError

from dctoolkit.cli import DctCommand, caller_path, parse_job_id
from dctoolkit.jobs import eventlog, streams
from dctoolkit.jobs.models import WAITING_STATES, Submission
from dctoolkit.jobs.web.outputs import job_outputs


class Command(DctCommand):
    help = "Copy a job's stdout, stderr and output files to DIR (default ./TASK<ID>/)."
    json_option = False
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("id", help="job id")
        parser.add_argument("--dest", help="folder to write into (default: ./TASK<ID>/)")

    def handle(self, *args, **options):
        if self.remote:
            job_id, state, copied, dest = self.fetch_remote(parse_job_id(options["id"]), options["dest"])
        else:
            job_id, state, copied, dest = self.copy_local(options["id"], options["dest"])
        self.stdout.write(f"job {job_id} ({state}): {copied} file{'s' if copied != 1 else ''} in {dest}/")

    def copy_local(self, job_id: str, dest: str | Path | None) -> tuple[int, str, int, Path]:
        job = self.user_job(job_id)
        shown = Path(dest or f"TASK{job.id}")
        dest = caller_path(shown)  # relative: to the caller's folder, wherever dct lives
        folder = job.folder()
        if not folder.exists():
            raise CommandError(f"job {job.id} has no results yet (it is {job.state})")
        dest.mkdir(parents=True, exist_ok=True)
        copied = 0
        # HTCondor's `output = out.$(Process)` / `error = ...` name the files; else stdout and stderr.
        names = streams.of(job)
        for stream, name in (("stdout", names.stdout), ("stderr", names.stderr)):
            target = dest / name
            if (folder / stream).is_file() and target.resolve().is_relative_to(dest.resolve()):
                target.parent.mkdir(parents=True, exist_ok=True)
                if stream == "stderr" and name == names.stdout:
                    # `output` and `error` name one file, as HTCondor allows: stderr follows stdout in it
                    # (HTCondor interleaves them as written; the node keeps them apart).
                    with open(target, "ab") as out, open(folder / stream, "rb") as err:
                        shutil.copyfileobj(err, out)
                    continue
                shutil.copyfile(folder / stream, target)
                copied += 1
        events = Submission(id=job.submission_id).folder() / eventlog.FILE_NAME
        target = dest / names.log
        if names.log and events.is_file() and target.resolve().is_relative_to(dest.resolve()):
            # The submission's HTCondor event log (all its jobs), under the name `log` gave.
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(events, target)
            copied += 1
        # Into HTCondor's initialdir, as condor_submit's file transfer returns them: the API's listing
        # (no link followed, names that are not UTF-8 left out), every file of it.
        listing = job_outputs(job, limit=None)
        for f in listing.files:
            target = dest / names.initialdir / f["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / "outputs" / f["path"], target)
            copied += 1
        if listing.unreadable_names:
            self.stderr.write(
                f"job {job.id}: left out {listing.unreadable_names} output name(s) that are not UTF-8 "
                "(the API cannot name them either)"
            )
        return job.id, job.state, copied, shown

    def fetch_remote(self, job_id: int, dest: str | Path | None) -> tuple[int, str, int, Path]:
        # mypy: self.remote is set: handle() takes the remote path only then.
        job = self.remote.job(job_id)  # type: ignore[union-attr]
        if job["state"] in WAITING_STATES and not job["started_at"]:
            raise CommandError(f"job {job_id} has no results yet (it is {job['state']})")
        shown = Path(dest or f"TASK{job_id}")
        dest = caller_path(shown)
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("stdout", "stderr"):
            # mypy: self.remote is set: handle() takes the remote path only then.
            (dest / name).write_bytes(self.remote.output(job_id, name)[0])  # type: ignore[union-attr]
        # mypy: self.remote is set: handle() takes the remote path only then.
        files = self.remote.output_files(job_id)  # type: ignore[union-attr]
        for f in files:
            target = dest / f["path"]
            if not target.resolve().is_relative_to(dest.resolve()):
                raise CommandError(f"the server sent a file path outside {shown}/: {f['path']}")
            target.parent.mkdir(parents=True, exist_ok=True)
            # mypy: self.remote is set: handle() takes the remote path only then.
            self.remote.download(job_id, f["path"], target)  # type: ignore[union-attr]
        return job_id, job["state"], 2 + len(files), shown
