"""./dct results ID [--dest DIR]"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.management.base import CommandError

from dctoolkit.cli import DctCommand, parse_job_id
from dctoolkit.jobs.models import WAITING_STATES


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
        dest = Path(dest or f"TASK{job.id}")
        folder = job.folder()
        if not folder.exists():
            raise CommandError(f"job {job.id} has no results yet (it is {job.state})")
        dest.mkdir(parents=True, exist_ok=True)
        copied = 0
        for name in ("stdout", "stderr"):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, dest / name)
                copied += 1
        outputs = folder / "outputs"
        if outputs.is_dir():
            for path in sorted(outputs.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    target = dest / path.relative_to(outputs)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
                    copied += 1
        return job.id, job.state, copied, dest

    def fetch_remote(self, job_id: int, dest: str | Path | None) -> tuple[int, str, int, Path]:
        # mypy: self.remote is set: handle() takes the remote path only then.
        job = self.remote.job(job_id)  # type: ignore[union-attr]
        if job["state"] in WAITING_STATES and not job["started_at"]:
            raise CommandError(f"job {job_id} has no results yet (it is {job['state']})")
        dest = Path(dest or f"TASK{job_id}")
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("stdout", "stderr"):
            # mypy: self.remote is set: handle() takes the remote path only then.
            (dest / name).write_bytes(self.remote.output(job_id, name)[0])  # type: ignore[union-attr]
        # mypy: self.remote is set: handle() takes the remote path only then.
        files = self.remote.output_files(job_id)  # type: ignore[union-attr]
        for f in files:
            target = dest / f["path"]
            if not target.resolve().is_relative_to(dest.resolve()):
                raise CommandError(f"the server sent a file path outside {dest}/: {f['path']}")
            target.parent.mkdir(parents=True, exist_ok=True)
            # mypy: self.remote is set: handle() takes the remote path only then.
            self.remote.download(job_id, f["path"], target)  # type: ignore[union-attr]
        return job_id, job["state"], 2 + len(files), dest
