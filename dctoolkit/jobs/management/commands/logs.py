"""./dct logs ID [--stderr] [-f]"""

from __future__ import annotations

import sys
import time

from dctoolkit.cli import DctCommand, parse_job_id
from dctoolkit.jobs.models import FINAL_STATES, Job

FOLLOW_POLL_SECONDS = 0.3
REMOTE_FOLLOW_POLL_SECONDS = 1.0


class Command(DctCommand):
    help = "Print a job's stdout (or --stderr); -f follows it live until the job ends."
    json_option = False
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("id", help="job id")
        # dest: Django's execute() takes an option named `stderr` for the stream its own messages go to (a
        # system check's warning then met a bool and the command died with a traceback).
        parser.add_argument(
            "--stderr", action="store_true", dest="job_stderr", help="the job's stderr instead of its stdout"
        )
        parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")

    def handle(self, *args, **options):
        stream = "stderr" if options["job_stderr"] else "stdout"
        read = self.remote_reader(options["id"], stream) if self.remote else self.local_reader(options["id"], stream)
        pause = REMOTE_FOLLOW_POLL_SECONDS if self.remote else FOLLOW_POLL_SECONDS
        try:
            follow(read, sys.stdout.buffer, options["follow"], pause)
        except KeyboardInterrupt:  # Ctrl-C ends following, as with tail -f
            pass

    def local_reader(self, job_id: str, stream: str):
        job = self.user_job(job_id)
        path = job.folder() / stream

        def read(offset: int) -> tuple[bytes, str | None]:
            state = Job.objects.filter(id=job.id).values_list("state", flat=True).first()
            if not path.exists():
                return b"", state
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(), state

        return read

    def remote_reader(self, job_id: str, stream: str):
        number = parse_job_id(job_id)
        # mypy: self.remote is set: handle() takes the remote path only then.
        self.remote.job(number)  # type: ignore[union-attr]  # "no job N of yours" as locally
        # mypy: self.remote is set: handle() takes the remote path only then.
        return lambda offset: self.remote.output(number, stream, offset)  # type: ignore[union-attr]


def follow(read, out, keep_going: bool, pause: float) -> None:
    """Copy what read(offset) gives to `out`; with keep_going, until the job has ended."""
    offset = 0
    while True:
        # read() gives the state from before it read, so a final state means nothing more will come.
        chunk, state = read(offset)
        if chunk:
            out.write(chunk)
            out.flush()
            offset += len(chunk)
        if not keep_going or state in FINAL_STATES:
            return
        time.sleep(pause)
