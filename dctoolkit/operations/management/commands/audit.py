"""./dct audit [--json] [--since DATE] [--user U] [--action A] [--limit N]"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand, holds_secret_key, render_table
from dctoolkit.lib.ids import bounded_int
from dctoolkit.operations.audit import AuditFilterError, filter_events, parse_since
from dctoolkit.operations.audit_web import STAFF_ONLY, audit_rows
from dctoolkit.operations.models import AuditAction, AuditEvent

MAX_LIMIT = 100_000


class Command(DctCommand):
    help = "The audit trail, newest first: who cancelled, held, edited, drained, changed a share, ..., and when."
    user_option = False  # --user here is whose actions to show; the trail is for staff and operators only
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("--since", metavar="DATE", help="from this date (2026-11-25), time, or age ago (7d, 12h)")
        parser.add_argument("--user", metavar="U", help="only what user U did ('system': what no person did)")
        parser.add_argument("--action", metavar="A", help=f"only action A ({', '.join(AuditAction.values)}, ...)")
        parser.add_argument("--limit", metavar="N", default="100", help="at most N events (default 100)")

    def handle(self, *args, **options):
        limit = bounded_int(options["limit"], 1, MAX_LIMIT)
        if limit is None:
            raise CommandError(f"--limit {options['limit']}: give a whole number from 1 to {MAX_LIMIT:,}")
        filters = {key: options[key] for key in ("since", "user", "action") if options[key]}
        if filters.get("since"):
            try:
                parse_since(filters["since"], timezone.now())  # the same check the server makes, said as --since
            except AuditFilterError as exc:
                raise CommandError(f"--{exc}") from None
        rows = self.remotely(filters, limit) if self.remote else self.locally(filters, limit)
        if options["json"]:
            self.emit_json({"events": rows})
            return
        if not rows:
            self.stdout.write("no events" + (" match these filters" if filters else " yet"))
            return
        lines = [["WHEN", "WHO", "ACTION", "TARGET", "DETAILS"]]
        for row in rows:
            when = timezone.localtime(datetime.fromisoformat(row["at"])).strftime("%Y-%m-%d %H:%M:%S")
            target = f"{row['target_kind']} {row['target']}".strip()
            lines.append([when, row["actor"] or "system", row["action"], target, row["summary"]])
        self.stdout.write(render_table(lines))

    def locally(self, filters: dict, limit: int) -> list[dict]:
        if not holds_secret_key():
            viewer = get_user_model().objects.filter(username=self.acting_name).first()
            if viewer is None or not viewer.is_staff:
                raise CommandError(f"{self.acting_name} is not staff: {STAFF_ONLY}")
        try:
            events = filter_events(AuditEvent.objects.all(), filters)
        except AuditFilterError as exc:
            raise CommandError(f"--{exc}") from None
        return audit_rows(events[:limit])

    def remotely(self, filters: dict, limit: int) -> list[dict]:
        # mypy: handle() calls this only when self.remote is set.
        remote = self.remote
        assert remote is not None
        rows: list[dict] = []
        page = 1
        while len(rows) < limit:
            answer = remote.get_json("/api/audit/", {**filters, "page": str(page)})
            rows += answer["events"]
            if not answer["next"]:
                break
            page += 1
        return rows[:limit]
