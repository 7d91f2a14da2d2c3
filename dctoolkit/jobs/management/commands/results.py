"""./dct results ID [--dest DIR]"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.management.base import CommandError

from dctoolkit.cli import DctCommand


class Command(DctCommand):
    help = "Copy a job's stdout, stderr and output files to DIR (default ./TASK<ID>/)."
    json_option = False

    def add_arguments(self, parser):
        parser.add_argument("id", help="job id")
        parser.add_argument("--dest", help="folder to write into (default: ./TASK<ID>/)")

    def handle(self, *args, **options):
        job = self.user_job(options["id"])
        dest = Path(options["dest"] or f"TASK{job.id}")
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
        self.stdout.write(f"job {job.id} ({job.state}): {copied} file{'s' if copied != 1 else ''} in {dest}/")
