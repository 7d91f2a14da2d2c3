#!/usr/bin/env python3
"""Start one node: a Celery worker on the node's own queue, plus heartbeats.

    python worker_entry.py --node node-1 [--slots 4]

`--slots` is the number of CPUs the node offers to jobs (default: all its
logical CPUs).  The worker takes one message at a time per slot (prefetch 1,
acks late), so nothing waits in a busy node's memory.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start a dctoolkit node worker.")
    parser.add_argument("--node", required=True, help="node name, also its queue (node-1, gpu-box)")
    parser.add_argument("--slots", type=int, default=0, help="CPUs offered to jobs (default: all logical CPUs)")
    parser.add_argument("--loglevel", default=os.environ.get("DCT_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not NODE_NAME.match(args.node) or args.node in ("control", "celery"):
        parser.error(f"--node {args.node!r}: use letters, digits, '.', '_' or '-', such as node-1")
    if args.slots < 0:
        parser.error("--slots must be at least 1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
    import psutil

    slots = args.slots or psutil.cpu_count() or 1
    os.environ["DCT_NODE_SLOTS"] = str(slots)
    import django

    django.setup()
    from dctoolkit.celery import app

    app.worker_main(
        [
            "worker",
            "-Q",
            args.node,
            "-n",
            f"{args.node}@%h",
            "--pool",
            "threads",
            "--concurrency",
            str(slots),
            "--prefetch-multiplier",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            args.loglevel,
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
