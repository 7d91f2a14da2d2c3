"""./dct jobs [--all] [--all-users] [--state S] [--json]"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand, render_table
from dctoolkit.jobs.models import FINAL_STATES, Job, JobState
from dctoolkit.jobs.serializers import jobs_payload
from dctoolkit.jobs.units import format_seconds

# History is long; the table shows the newest this many unless --limit says otherwise.
DEFAULT_LIMIT = 1000


class Command(DctCommand):
    help = "Your queued and running jobs, why waiting ones wait, and (--all) finished ones."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="include finished jobs (history)")
        parser.add_argument("--all-users", action="store_true", help="everyone's jobs, not only yours")
        parser.add_argument("--state", choices=[s.value for s in JobState], help="only jobs in this state")
        parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="at most this many, newest first")

    def handle(self, *args, **options):
        jobs = Job.objects.select_related("owner", "node").order_by("-id")
        if not options["all_users"]:
            jobs = jobs.filter(owner=self.acting_user())
        if options["state"]:
            jobs = jobs.filter(state=options["state"])
        elif not options["all"]:
            jobs = jobs.exclude(state__in=FINAL_STATES)
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        rows = jobs_payload(list(jobs[: options["limit"]])[::-1], timezone.now())
        if options["json"]:
            self.emit_json({"jobs": rows})
            return
        if not rows:
            self.stdout.write("no jobs" + ("" if options["all"] else " queued or running; --all shows finished ones"))
            return
        self.stdout.write(table(rows, show_owner=options["all_users"]))


def table(rows: list[dict], show_owner: bool = False) -> str:
    header = ["ID", "OWNER", "NAME", "STATE", "NODE", "RUN TIME", "EXIT", "REASON"]
    lines = []
    for r in rows:
        lines.append(
            [
                str(r["id"]),
                r["owner"],
                r["name"][:24],
                r["state"],
                r["node"] or "-",
                format_seconds(r["run_seconds"]),
                "-" if r["exit_code"] is None else str(r["exit_code"]),
                r["reason"] or "",
            ]
        )
    if not show_owner:
        header.pop(1)
        for line in lines:
            line.pop(1)
    return render_table([header, *lines])
