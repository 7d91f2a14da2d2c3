"""./dct nodes [--json]"""

from __future__ import annotations

from django.utils import timezone

from dctoolkit.cli import DctCommand, render_table
from dctoolkit.jobs.serializers import nodes_payload
from dctoolkit.jobs.units import format_mb


class Command(DctCommand):
    help = "Nodes: available / busy / offline, with their metrics."
    user_option = False
    remote_capable = True

    def handle(self, *args, **options):
        now = timezone.now()
        rows = self.remote.get_json("/api/nodes/")["nodes"] if self.remote else nodes_payload(now)
        if options["json"]:
            self.emit_json({"nodes": rows})
            return
        if not rows:
            self.stdout.write("no nodes yet; start one with 'python worker_entry.py --node node-1'")
            return
        header = [
            "NODE",
            "STATE",
            "SLOTS",
            "FREE",
            "CORES/THREADS",
            "MEMORY (avail/total)",
            "GPUS",
            "LOAD",
            "SANDBOX",
            "HEARTBEAT",
        ]
        lines = [header]
        for r in rows:
            age = "-"
            if r["last_heartbeat"]:
                from datetime import datetime

                age = f"{(now - datetime.fromisoformat(r['last_heartbeat'])).total_seconds():.0f}s ago"
            lines.append(
                [
                    r["name"],
                    r["state"],
                    str(r["slots"]),
                    str(r["free_cpus"]),
                    f"{r['cpus']}/{r['threads']}",
                    f"{format_mb(r['memory_available_mb'])}/{format_mb(r['memory_total_mb'])}",
                    str(len(r["gpus"])) + (f" (CUDA {r['cuda']})" if r["cuda"] else ""),
                    f"{r['load']:.2f}",
                    "on" if r["sandbox"] else "OFF",
                    age,
                ]
            )
        self.stdout.write(render_table(lines))
