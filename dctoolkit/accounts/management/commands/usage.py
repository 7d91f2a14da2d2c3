"""./dct usage [--json]"""

from django.utils import timezone

from dctoolkit.accounts.serializers import group_rows, usage_rows
from dctoolkit.cli import DctCommand, render_table
from dctoolkit.lib.units import format_seconds


class Command(DctCommand):
    help = (
        "Fair share: each user's decayed usage (cpu-seconds), priority (1 goes first), running and queued jobs; "
        "and the accounting groups (served by usage over share first, then users within them)."
    )
    user_option = False
    remote_capable = True

    def handle(self, *args, **options):
        if self.remote:
            found = self.remote.get_json("/api/usage/")
            rows, groups = found["users"], found.get("groups", [])
        else:
            now = timezone.now()
            rows, groups = usage_rows(now), group_rows(now)
        if options["json"]:
            self.emit_json({"users": rows, "groups": groups})
            return
        if not rows and not groups:
            self.stdout.write("no usage yet")
            return
        if rows:
            lines = [["PRIORITY", "USER", "GROUP", "USAGE (cpu-time)", "SHARE", "RUNNING", "QUEUED"]]
            for r in rows:
                lines.append(
                    [
                        str(r["priority"]),
                        r["user"],
                        r["group"] or "-",
                        format_seconds(r["usage"]),
                        f"{r['share']:g}",
                        str(r["running"]),
                        str(r["queued"]),
                    ]
                )
            self.stdout.write(render_table(lines))
        if groups:
            lines = [["PRIORITY", "GROUP", "USAGE (cpu-time)", "SHARE", "MEMBERS"]]
            for g in groups:
                members = ", ".join(g["members"]) or "-"
                lines.append([str(g["priority"]), g["group"], format_seconds(g["usage"]), f"{g['share']:g}", members])
            self.stdout.write(("\n" if rows else "") + render_table(lines))
