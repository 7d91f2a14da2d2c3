"""Shared body of cancel / hold / release."""

from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand
from dctoolkit.jobs.dispatch import wake_scheduler
from dctoolkit.jobs.models import Job
from dctoolkit.jobs.serializers import jobs_payload


class ControlCommand(DctCommand):
    verb = ""
    done_word = ""
    action: Callable[[Job], bool]
    refusal = ""

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="+", metavar="ID", help="job ids")

    def handle(self, *args, **options):
        user = self.acting_user()
        jobs = [self.user_job(i, user) for i in options["ids"]]
        failures = []
        for job in jobs:
            if type(self).action(job):
                if not options["json"]:
                    self.stdout.write(f"job {job.id}: {self.done_word}")
            else:
                job.refresh_from_db()
                failures.append(f"job {job.id} is {job.state}: {self.refusal}")
        wake_scheduler()
        if options["json"]:
            fresh = Job.objects.filter(id__in=[j.id for j in jobs]).select_related("owner", "node")
            self.emit_json({"jobs": jobs_payload(fresh, timezone.now())})
        if failures:
            raise CommandError("; ".join(failures))
