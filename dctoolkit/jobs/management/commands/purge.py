"""./dct purge --older-than AGE [--dry-run]"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand
from dctoolkit.jobs.web.history import purge_files
from dctoolkit.lib.units import UnitError, format_mb, parse_duration


class Command(DctCommand):
    help = "Remove the files (stdout, stderr, outputs, inputs) of jobs that ended long ago; keep their records."
    user_option = False

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, metavar="AGE", help="ended this long ago: 30d, 12h, 90m")
        parser.add_argument("--dry-run", action="store_true", help="only say what would go")

    def handle(self, *args, **options):
        try:
            age = parse_duration(options["older_than"])
        except UnitError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        cutoff = timezone.now() - timedelta(seconds=age)
        jobs, freed = purge_files(cutoff, dry_run=options["dry_run"])
        if options["json"]:
            self.emit_json({"jobs": jobs, "bytes": freed, "dry_run": options["dry_run"], "before": cutoff.isoformat()})
            return
        verb = "would remove" if options["dry_run"] else "removed"
        self.stdout.write(
            f"{verb} the files of {jobs} job{'s' if jobs != 1 else ''} that ended before "
            f"{cutoff:%Y-%m-%d %H:%M} ({format_mb(freed / 1024 / 1024)}); their records and accounting stay"
        )
