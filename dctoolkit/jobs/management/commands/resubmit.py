"""./dct resubmit ID... | --submission S [--failed] [--json] [--parsable]"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand, parse_job_id
from dctoolkit.jobs.intake.again import AgainError, resubmit_jobs, resubmit_submission, user_submission
from dctoolkit.jobs.management.commands.submit import span
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.web.serializers import jobs_payload


class Command(DctCommand):
    help = "Queue new jobs from the same submission text and staged files (a job, or a whole submission)."
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", metavar="ID", help="job ids to submit again")
        parser.add_argument("--submission", metavar="S", help="every job of submission S (its $(Cluster))")
        parser.add_argument("--failed", action="store_true", help="only the failed ones")
        parser.add_argument("--parsable", action="store_true", help="print only the new job ids, one per line")

    def handle(self, *args, **options):
        if options["parsable"] and options["json"]:
            raise CommandError("--parsable and --json each choose the whole output; give one of them")
        ids = [parse_job_id(i) for i in options["ids"]]
        sub_id = parse_job_id(options["submission"]) if options["submission"] else None
        if bool(ids) == (sub_id is not None):
            raise CommandError("resubmit: give job ids or --submission S (one of them)")
        rows = self.remotely(ids, sub_id, options["failed"]) if self.remote else self.locally(ids, sub_id, options)
        new = [row["id"] for row in rows]
        if options["json"]:
            self.emit_json({"jobs": rows})
        elif options["parsable"]:
            self.stdout.write("\n".join(map(str, new)))
        else:
            self.stdout.write(f"{len(new)} job{'s' if len(new) != 1 else ''} submitted: {span(new)}")

    def locally(self, ids: list[int], sub_id: int | None, options: dict) -> list[dict]:
        user = self.acting_user()
        try:
            if sub_id is not None:
                jobs = resubmit_submission(user_submission(user, sub_id), failed=options["failed"], actor=user)
            else:
                named = [self.user_job(i, user) for i in dict.fromkeys(ids)]
                if options["failed"]:
                    named = [job for job in named if job.state == JobState.FAILED]
                    if not named:
                        raise AgainError("none of these jobs failed; leave out --failed to submit them again")
                jobs = resubmit_jobs(named, actor=user)
        except AgainError as exc:
            raise CommandError(str(exc)) from None
        fresh = Job.objects.filter(id__in=[j.id for j in jobs]).select_related("owner", "node").order_by("id")
        return jobs_payload(list(fresh), timezone.now())

    def remotely(self, ids: list[int], sub_id: int | None, failed: bool) -> list[dict]:
        # mypy: handle() calls this only when self.remote is set.
        remote = self.remote
        assert remote is not None
        if sub_id is not None:
            return remote.resubmit(f"/api/submissions/{sub_id}/resubmit/", failed)
        rows = []
        for job_id in dict.fromkeys(ids):
            rows += remote.resubmit(f"/api/jobs/{job_id}/resubmit/", failed)
        return rows
