"""Waking the scheduler: a one-token Redis list it blocks on between passes."""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings

log = logging.getLogger(__name__)


WAKE_KEY = "dct:scheduler:wake"


_redis: redis.Redis | None = None


def _redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return _redis


def wake_scheduler() -> None:
    """Tell the scheduler there is work (a submit, a job end); harmless when Redis is away."""
    try:
        # One round trip, no MULTI: a token more or less is harmless, the list stays one long.
        # mypy: redis-py types a command as its result; on a pipeline it returns the pipeline.
        _redis_client().pipeline(transaction=False).lpush(WAKE_KEY, 1).ltrim(WAKE_KEY, 0, 0).execute()  # type: ignore[attr-defined]
    except redis.RedisError as exc:
        log.debug("could not wake the scheduler: %s", exc)


class _Waker:
    """Wakes the scheduler from a thread of its own, so a node's job slot does not wait on Redis.

    Wakes asked for while one is being sent are sent as one.  A wake lost
    with the process costs at most the scheduler's idle second.
    """

    def __init__(self) -> None:
        self.wanted = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def __call__(self) -> None:
        self.wanted.set()
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="wake-scheduler", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            self.wanted.wait()
            self.wanted.clear()
            wake_scheduler()


wake_scheduler_soon = _Waker()


def wait_for_wake(timeout_seconds: float) -> bool:
    """Block until woken or the timeout passes; True when woken."""
    try:
        return _redis_client().blpop([WAKE_KEY], timeout=timeout_seconds) is not None
    except redis.RedisError as exc:
        log.warning("Redis is not answering (%s); retrying", exc)
        time.sleep(min(timeout_seconds, 1.0))
        return False
