"""Shared body of cancel / hold / release (locally, or through the API with DCT_SERVER)."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand, parse_job_id
from dctoolkit.jobs.dispatch import wake_scheduler
from dctoolkit.jobs.models import Job
from dctoolkit.jobs.serializers import jobs_payload
from dctoolkit.jobs.transitions import CONTROLS


class ControlCommand(DctCommand):
    verb = ""  # a key of transitions.CONTROLS
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="+", metavar="ID", help="job ids")

    def handle(self, *args, **options):
        control = CONTROLS[self.verb]
        if self.remote:
            rows, failures = self.remote.control(self.verb, [parse_job_id(i) for i in options["ids"]])
        else:
            rows, failures = self.control_locally(control, options["ids"])
        if options["json"]:
            self.emit_json({"jobs": rows})
        else:
            for row in rows:
                if row["id"] not in failures:
                    self.stdout.write(f"job {row['id']}: {control.done}")
        if failures:
            raise CommandError("; ".join(failures.values()))

    def control_locally(self, control, ids: list[str]) -> tuple[list[dict], dict[int, str]]:
        user = self.acting_user()
        jobs = [self.user_job(i, user) for i in ids]
        failures = {}
        for job in jobs:
            if not control.act(job):
                job.refresh_from_db()
                failures[job.id] = f"job {job.id} is {job.state}: {control.refusal}"
        wake_scheduler()
        fresh = Job.objects.filter(id__in=[j.id for j in jobs]).select_related("owner", "node").order_by("id")
        return jobs_payload(fresh, timezone.now()), failures
