"""./dct nodes [--json]"""

from __future__ import annotations

from django.utils import timezone

from dctoolkit.cli import DctCommand, render_table
from dctoolkit.jobs.web.serializers import nodes_payload
from dctoolkit.lib.units import format_mb


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
            "LABELS",
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
                    r["state"] + _desktop(r),
                    str(r["slots"]),
                    str(r["free_cpus"]),
                    f"{r['cpus']}/{r['threads']}",
                    f"{format_mb(r['memory_available_mb'])}/{format_mb(r['memory_total_mb'])}",
                    _gpus(r),
                    f"{r['load']:.2f}",
                    "on" if r["sandbox"] else "OFF",
                    ",".join(r.get("labels", ())) or "-",
                    age,
                ]
            )
        self.stdout.write(render_table(lines))


def _desktop(row: dict) -> str:
    """` (desktop: owner present)` or ` (desktop: lending)` for a desktop node; "" for any other."""
    # .get: a server older than this client sends no policy.
    if row.get("policy") != "desktop":
        return ""
    return " (desktop: owner present)" if row.get("owner_present") else " (desktop: lending)"


def _gpus(row: dict) -> str:
    """`2 A100,T4 (CUDA 12.2)`: how many, of which kinds (declared GPUs have no kind), and the driver's CUDA."""
    # .get: a server older than this client sends neither gpu_devices nor labels.
    devices = row.get("gpu_devices", row["gpus"])
    kinds = [g.get("name", "") for g in devices if g.get("name") and g.get("name") != "declared GPU"]
    text = str(len(devices)) + (f" {','.join(kinds)}" if kinds else "")
    return text + (f" (CUDA {row['cuda']})" if row["cuda"] else "")
