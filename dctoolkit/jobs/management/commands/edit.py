"""./dct edit ID... KEY=VALUE... [--json]"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand, parse_job_id
from dctoolkit.jobs.intake.again import EDITABLE, AgainError, edit_jobs, edit_pairs
from dctoolkit.jobs.models import Job
from dctoolkit.jobs.web.serializers import jobs_payload


class Command(DctCommand):
    help = f"Change waiting, queued or held jobs ({', '.join(EDITABLE)}), checked like a submission."
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("words", nargs="+", metavar="ID|KEY=VALUE", help="job ids, then KEY=VALUE changes")

    def handle(self, *args, **options):
        ids = [parse_job_id(w) for w in options["words"] if "=" not in w]
        try:
            pairs = edit_pairs([w for w in options["words"] if "=" in w])
        except AgainError as exc:
            raise CommandError(str(exc)) from None
        if not ids:
            raise CommandError("edit: which jobs? give job ids before KEY=VALUE")
        if not pairs:
            raise CommandError(f"edit: what to change? give KEY=VALUE, KEY one of {', '.join(EDITABLE)}")
        ids = list(dict.fromkeys(ids))
        rows, failures = self.remotely(ids, pairs) if self.remote else self.locally(ids, pairs)
        changed = [row for row in rows if row["id"] not in failures]
        if options["json"]:
            self.emit_json({"jobs": changed})
        else:
            for row in changed:
                self.stdout.write(f"job {row['id']}: changed")
        if failures:
            raise CommandError("; ".join(failures.values()))

    def locally(self, ids: list[int], pairs: dict[str, str]) -> tuple[list[dict], dict[int, str]]:
        user = self.acting_user()
        jobs = [self.user_job(i, user) for i in ids]  # every id must be the user's before any is changed
        try:
            changed, failures = edit_jobs(jobs, pairs, actor=user)
        except AgainError as exc:
            raise CommandError(str(exc)) from None
        fresh = Job.objects.filter(id__in=changed).select_related("owner", "node").order_by("id")
        return jobs_payload(list(fresh), timezone.now()), failures

    def remotely(self, ids: list[int], pairs: dict[str, str]) -> tuple[list[dict], dict[int, str]]:
        # mypy: handle() calls this only when self.remote is set.
        remote = self.remote
        assert remote is not None
        return remote.edit(ids, pairs)
