"""./dct job ID [--json]"""

from __future__ import annotations

from django.utils import timezone

from dctoolkit.checks import TAG as CHECK_TAG
from dctoolkit.cli import DctCommand, parse_job_id
from dctoolkit.jobs.web.serializers import jobs_payload
from dctoolkit.lib.units import format_mb, format_seconds


class Command(DctCommand):
    help = "One job in full."
    # Only dctoolkit's own system checks (dctoolkit/checks.py): Django's URL checks import every view and
    # the API schema, half of this command's start-up, and scripts call it often (`./dct check` runs all).
    requires_system_checks = [CHECK_TAG]
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("id", help="job id")

    def handle(self, *args, **options):
        if self.remote:
            data = self.remote.job(parse_job_id(options["id"]))
        else:
            job = self.user_job(options["id"])
            data = jobs_payload([job], timezone.now())[0]
            if not options["json"]:
                data["folder"] = str(job.folder())
        if options["json"]:
            self.emit_json(data)
            return
        data["run_seconds"] = format_seconds(data["run_seconds"])
        data["cpu_seconds"] = format_seconds(data["cpu_seconds"])
        data["max_rss_mb"] = format_mb(data["max_rss_mb"])
        data["request_memory_mb"] = format_mb(data["request_memory_mb"])
        if data.get("sandboxed") is not None:
            data["sandboxed"] = (
                "yes" if data["sandboxed"] else "no: its node could not use bubblewrap, so it ran UNFENCED"
            )
        advice = data.pop("usage_advice", None)
        if advice:
            data["resources"] = advice["comparison"]
            data["suggestion"] = ", ".join(advice["suggestions"])
        width = max(len(k) for k in data)
        for key, value in data.items():
            if value in (None, "", [], {}):
                continue
            self.stdout.write(f"{key.ljust(width)}  {value}")
