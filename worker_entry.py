#!/usr/bin/env python3
"""Start one node: a Celery worker on the node's own queue, plus heartbeats.

    python worker_entry.py --node node-1 [--slots 4]

`--slots` is the number of CPUs the node offers to jobs (default:
DCT_NODE_SLOTS, else all its logical CPUs).  The worker takes one message at
a time per slot (prefetch 1, acks late), so nothing waits in a busy node's
memory; its pool has one thread per slot, and that is what it registers.
Settings come from dctoolkit/settings.py like everywhere else; a bad one
stops the start with its message.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def main(argv: list[str] | None = None) -> int:
    # The one environment variable set here, before Django starts; every setting is read by settings.py.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        default_slots, default_level = settings.DCT_NODE_SLOTS, settings.DCT_LOG_LEVEL
    except ImproperlyConfigured as exc:  # a bad value in the environment: named, no traceback
        raise SystemExit(f"worker_entry.py: {exc}") from None
    parser = argparse.ArgumentParser(description="Start a dctoolkit node worker.")
    parser.add_argument("--node", required=True, help="node name, also its queue (node-1, gpu-box)")
    parser.add_argument(
        "--slots", type=int, default=default_slots,
        help="CPUs offered to jobs (default: DCT_NODE_SLOTS, here %(default)s; 0: all logical CPUs)",
    )  # fmt: skip
    parser.add_argument("--loglevel", default=default_level, help="Celery's log level (default: DCT_LOG_LEVEL, INFO)")
    args = parser.parse_args(argv)
    if not NODE_NAME.match(args.node) or args.node in ("control", "celery"):
        parser.error(f"--node {args.node!r}: use letters, digits, '.', '_' or '-', such as node-1")
    if args.slots < 0:
        parser.error("--slots must be at least 1")
    import psutil

    # The pool's threads are the node's slots: the worker's start reads them back from the pool (tasks.py).
    slots = args.slots or psutil.cpu_count() or 1
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
