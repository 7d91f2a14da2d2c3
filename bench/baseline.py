"""The baseline: a plain Celery worker, as a lab would hand-roll it.

Same broker (the bench's private Redis), the same total concurrency as the
dctoolkit nodes and the same pool (threads: on this machine at least as fast
as the default prefork pool, so the stronger baseline); each task runs the
same script with `subprocess` and tells the bench it is done through Redis.
No database, no sandbox, no scheduler, no output collection.  Started as

    python -m celery -A bench.baseline worker -Q bench-baseline --pool threads -c 4

with `REDIS_URL` set to the broker's URL (the bench's private Redis).
"""

from __future__ import annotations

import os
import subprocess

import redis
from celery import Celery

QUEUE = "bench-baseline"
TASK = "bench.run_script"

app = Celery("bench-baseline", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True, task_default_queue=QUEUE)

_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(app.conf.broker_url)
    return _redis


@app.task(name=TASK)
def run_script(path: str, done_key: str) -> None:
    """Run `path` in its folder, then push its exit status onto the Redis list `done_key`."""
    done = subprocess.run([path], cwd=os.path.dirname(path), stdin=subprocess.DEVNULL, capture_output=True, check=False)
    _client().rpush(done_key, done.returncode)
