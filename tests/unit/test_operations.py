"""Who may scrape /metrics, and the scheduler's pass statistics, without services."""

from __future__ import annotations

import ipaddress

import pytest
import redis
from django.test import RequestFactory

from dctoolkit.operations.metrics import scraper_allowed
from dctoolkit.operations.passes import PASS_BUCKETS, PassStats


def request_from(address: str, token: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return RequestFactory().get("/metrics", REMOTE_ADDR=address, **headers)


@pytest.fixture
def guarded(settings):
    settings.DCT_METRICS_TOKEN = "right-token"
    settings.DCT_METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
    return settings


def test_the_token_or_an_allowed_address_lets_a_scraper_in(guarded):
    assert scraper_allowed(request_from("192.0.2.1", "right-token"))
    assert scraper_allowed(request_from("10.1.2.3"))
    assert scraper_allowed(request_from("2001:db8::5"))
    assert scraper_allowed(request_from("::ffff:10.1.2.3")), "an IPv4 peer on a dual-stack socket"


def test_anyone_else_is_refused(guarded):
    assert not scraper_allowed(request_from("192.0.2.1"))
    assert not scraper_allowed(request_from("192.0.2.1", "wrong-token"))
    assert not scraper_allowed(request_from("192.0.2.1", "right-token-and-more"))
    assert not scraper_allowed(request_from("not-an-address"))


def test_with_nothing_configured_nobody_may_scrape(settings):
    settings.DCT_METRICS_TOKEN, settings.DCT_METRICS_ALLOW = "", []
    assert not scraper_allowed(request_from("127.0.0.1", ""))
    assert not scraper_allowed(request_from("127.0.0.1"))


def test_a_pass_lands_in_the_first_bucket_that_holds_it():
    stats = PassStats()
    stats.record(0.0005, 3)
    stats.record(PASS_BUCKETS[2], 0)  # a bound belongs to its own bucket (le)
    stats.record(100.0, 1)
    assert stats.buckets[0] == 1 and stats.buckets[2] == 1 and stats.buckets[-1] == 1
    assert (stats.passes, stats.placements) == (3, 4)


def test_statistics_that_redis_did_not_take_are_kept_for_the_next_flush():
    stats = PassStats()
    stats.record(0.01, 2)
    stats.record_outcomes({"placed": 1, "full": 2})
    stats.record_outcomes({"full": 1})
    away = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    assert stats.flush(away) is False
    assert (stats.passes, stats.placements) == (1, 2)
    assert stats.outcomes == {"placed": 1, "full": 3}
