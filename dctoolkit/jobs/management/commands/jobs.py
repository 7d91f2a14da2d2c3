"""./dct jobs [--all] [--all-users] [--state S] [--name N] [--since D] [--until D] [--json]"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db.models import QuerySet
from django.utils import timezone

from dctoolkit.cli import DctCommand, render_table
from dctoolkit.jobs.models import FINAL_STATES, Job, JobState
from dctoolkit.jobs.web.history import FilterError, filter_jobs
from dctoolkit.jobs.web.serializers import jobs_payload
from dctoolkit.lib.units import format_seconds

# History is long; the table shows the newest this many unless --limit says otherwise.
DEFAULT_LIMIT = 1000
UNFINISHED = ",".join(s for s in JobState.values if s not in FINAL_STATES)


# The most rows one listing prints (more would overflow the database's LIMIT as a number, or the screen).
MAX_LIMIT = 1_000_000


class Command(DctCommand):
    help = "Your queued and running jobs, why waiting ones wait, and (--all) finished ones."
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="include finished jobs (history)")
        parser.add_argument("--all-users", action="store_true", help="everyone's jobs, not only yours")
        parser.add_argument("--state", choices=[s.value for s in JobState], help="only jobs in this state")
        parser.add_argument("--name", help="only jobs whose name contains this (any case)")
        parser.add_argument("--since", metavar="DATE", help="submitted on or after this date (2026-11-25) or time")
        parser.add_argument("--until", metavar="DATE", help="submitted on or before this date, or before this time")
        parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="at most this many, newest first")

    def handle(self, *args, **options):
        if not 1 <= options["limit"] <= MAX_LIMIT:
            raise CommandError(f"--limit must be from 1 to {MAX_LIMIT:,}")
        query = {k: options[k] for k in ("name", "since", "until") if options[k]}
        query["state"] = options["state"] or ("" if options["all"] else UNFINISHED)
        if options["all_users"]:
            query["all_users"] = "1"
        if self.remote:
            rows = self.remote.jobs(query, options["limit"])[::-1]
        else:
            rows = self.local_rows(query, options["limit"])
        if options["json"]:
            self.emit_json({"jobs": rows})
            return
        if not rows:
            self.stdout.write("no jobs" + ("" if options["all"] else " queued or running; --all shows finished ones"))
            return
        self.stdout.write(table(rows, show_owner=options["all_users"]))

    def local_rows(self, query: dict, limit: int) -> list[dict]:
        """Oldest first: the newest `limit` jobs that match, as the API would list them."""
        jobs: QuerySet[Job] = Job.objects.select_related("owner", "node").order_by("-id")
        # --all-users lists everyone's jobs, as before: this runs with the database's own credentials.
        if not query.pop("all_users", None):
            # mypy: the project's user model is auth.User.
            jobs = jobs.filter(owner=self.acting_user())  # type: ignore[misc]
        try:
            jobs = filter_jobs(jobs, query)
        except FilterError as exc:
            raise CommandError(str(exc)) from None
        return jobs_payload(list(jobs[:limit])[::-1], timezone.now())


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
