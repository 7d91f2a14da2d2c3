"""./dct usage [--json]"""

from django.utils import timezone

from dctoolkit.accounts.reports import usage_payload
from dctoolkit.cli import DctCommand, render_table
from dctoolkit.jobs.units import format_seconds


class Command(DctCommand):
    help = "Fair share: each user's decayed usage (cpu-seconds), priority (1 goes first), running and queued jobs."
    user_option = False
    remote_capable = True

    def handle(self, *args, **options):
        rows = self.remote.get_json("/api/usage/")["users"] if self.remote else usage_payload(timezone.now())
        if options["json"]:
            self.emit_json({"users": rows})
            return
        if not rows:
            self.stdout.write("no usage yet")
            return
        lines = [["PRIORITY", "USER", "USAGE (cpu-time)", "SHARE", "RUNNING", "QUEUED"]]
        for r in rows:
            lines.append(
                [
                    str(r["priority"]),
                    r["user"],
                    format_seconds(r["usage"]),
                    f"{r['share']:g}",
                    str(r["running"]),
                    str(r["queued"]),
                ]
            )
        self.stdout.write(render_table(lines))
