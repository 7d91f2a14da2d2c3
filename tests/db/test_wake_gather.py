"""Coalesced wake-ups (DCT_PASS_GATHER_MS): a pass woken soon after the last one waits out the gap, and the
wake-ups sent meanwhile are dropped (that pass sees their changes); a later one still wakes the next pass.
Against a real redis-server."""

from __future__ import annotations

import time

import pytest
import redis

from dctoolkit.jobs.management.commands import scheduler
from dctoolkit.jobs.scheduling import wake


@pytest.fixture
def woken(settings, redis_server, monkeypatch):
    settings.REDIS_URL = redis_server.url
    monkeypatch.setattr(wake, "_redis", None)
    client = redis.Redis.from_url(redis_server.url)
    client.delete(wake.WAKE_KEY)
    return client


def test_a_wake_up_soon_after_a_round_waits_and_drops_the_wake_ups_of_its_wait(woken, monkeypatch):
    real_sleep = time.sleep
    slept = []

    def sleep_while_a_job_ends(seconds: float) -> None:
        slept.append(seconds)
        wake.wake_scheduler()  # a job's end during the wait: the pass after it sees that end
        real_sleep(seconds)

    monkeypatch.setattr(scheduler.time, "sleep", sleep_while_a_job_ends)
    wake.wake_scheduler()
    assert wake.wait_for_wake(1.0)
    assert scheduler.gather_wakes(time.monotonic(), 0.2)
    assert slept and 0 < slept[0] <= 0.2
    assert not woken.exists(wake.WAKE_KEY)  # no pass for an end the next pass serves
    wake.wake_scheduler()  # an end after the wait: the pass may have read the nodes before it
    assert wake.wait_for_wake(1.0)


def test_a_wake_up_long_after_a_round_passes_at_once_and_keeps_later_wake_ups(woken, monkeypatch):
    monkeypatch.setattr(scheduler.time, "sleep", lambda seconds: pytest.fail("waited"))
    wake.wake_scheduler()
    assert not scheduler.gather_wakes(time.monotonic() - 10, 0.2)
    assert woken.exists(wake.WAKE_KEY)
