"""The scheduler's pass statistics, kept where the web process can read them for /metrics.

The scheduler adds each pass's duration and placements to a `PassStats` in
its own memory (no I/O in the pass) and writes the sums to one Redis hash at
most once per housekeeping round (`flush`).  Every scheduler adds to the same
hash, so the counts are the cluster's; a Redis restart starts them again
from zero, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis
from django.conf import settings

log = logging.getLogger(__name__)

STATS_KEY = "dct:scheduler:passes"
# Upper bounds, in seconds, of the pass-duration histogram's buckets (then +Inf).
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class PassStats:
    """Passes not yet written out: their count, summed seconds, placements, bucket counts and outcomes
    (`dispatch.OUTCOMES`' names: how many stopped with every slot full, with no queued job, ...)."""

    passes: int = 0
    seconds: float = 0.0
    placements: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(PASS_BUCKETS) + 1))
    outcomes: Counter[str] = field(default_factory=Counter)

    def record(self, seconds: float, placed: int) -> None:
        self.passes += 1
        self.seconds += seconds
        self.placements += placed
        self.buckets[bisect_left(PASS_BUCKETS, seconds)] += 1

    def record_outcomes(self, counts: Mapping[str, int]) -> None:
        self.outcomes.update(counts)

    def flush(self, client: redis.Redis) -> bool:
        """Add what was recorded to the shared hash and start again; False (kept) if Redis is away."""
        if not self.passes:
            return True
        pipe = client.pipeline(transaction=True)
        pipe.hincrby(STATS_KEY, "passes", self.passes)
        pipe.hincrbyfloat(STATS_KEY, "seconds", self.seconds)
        pipe.hincrby(STATS_KEY, "placements", self.placements)
        for i, count in enumerate(self.buckets):
            if count:
                pipe.hincrby(STATS_KEY, f"bucket{i}", count)
        for name, count in self.outcomes.items():
            pipe.hincrby(STATS_KEY, f"outcome:{name}", count)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("could not write the pass statistics: %s", exc)
            return False
        self.passes, self.seconds, self.placements = 0, 0.0, 0
        self.buckets = [0] * (len(PASS_BUCKETS) + 1)
        self.outcomes = Counter()
        return True


def read_stats(client: redis.Redis) -> dict[str, float] | None:
    """The shared sums (passes, seconds, placements, bucketN, outcome:NAME), or None when Redis does not answer."""
    try:
        raw = client.hgetall(STATS_KEY)
    except redis.RedisError:
        return None
    return {key.decode(): float(value) for key, value in raw.items()}  # type: ignore[union-attr]


_client: redis.Redis | None = None


def stats_client() -> redis.Redis:
    """One Redis client per process, with short time-outs (a scrape or a round must not hang on Redis)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=1)
    return _client
