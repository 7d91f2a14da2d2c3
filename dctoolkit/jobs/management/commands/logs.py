"""./dct logs ID [--stderr] [-f]"""

from __future__ import annotations

import sys
import time

from dctoolkit.cli import DctCommand
from dctoolkit.jobs.models import FINAL_STATES, Job

FOLLOW_POLL_SECONDS = 0.3


class Command(DctCommand):
    help = "Print a job's stdout (or --stderr); -f follows it live until the job ends."
    json_option = False

    def add_arguments(self, parser):
        parser.add_argument("id", help="job id")
        parser.add_argument("--stderr", action="store_true", help="the job's stderr instead of its stdout")
        parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")

    def handle(self, *args, **options):
        job = self.user_job(options["id"])
        path = job.folder() / ("stderr" if options["stderr"] else "stdout")
        offset = 0
        out = sys.stdout.buffer
        while True:
            state = Job.objects.filter(id=job.id).values_list("state", flat=True).first()
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                if chunk:
                    out.write(chunk)
                    out.flush()
                    offset += len(chunk)
            if not options["follow"] or state in FINAL_STATES:
                break
            time.sleep(FOLLOW_POLL_SECONDS)
