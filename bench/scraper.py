"""A Prometheus scraper stand-in for `metrics_scrape_throughput`: `python -m bench.scraper SECONDS OUT`.

Renders `GET /metrics`'s body (the same collector the view serves) every
SECONDS, in a process of its own (as a real scrape is served by a web worker,
not by the scheduler or a node), and appends each scrape's duration in ms to
OUT, one line each, until it is stopped.
"""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> None:
    interval, out = float(argv[0]), argv[1]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")
    import django

    django.setup()
    from dctoolkit.operations.metrics import exposition

    with open(out, "a", buffering=1) as log:  # a line each: nothing is lost when it is stopped
        while True:
            started = time.monotonic()
            exposition()
            took = time.monotonic() - started
            log.write(f"{took * 1000:.3f}\n")
            time.sleep(max(0.0, interval - took))


if __name__ == "__main__":
    main(sys.argv[1:])
