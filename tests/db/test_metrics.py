"""GET /metrics through a real HTTP server (pytest-django's live server) on the test database.

The scheduler's pass statistics come from a real redis-server (the one `./dct up` starts).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
import redis
from django.contrib.auth import get_user_model
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.nodes.models import Node, NodeState
from dctoolkit.operations import metrics, passes

TOKEN = "scrape-token-0123456789"


@pytest.fixture
def configured(settings, redis_server, monkeypatch):
    settings.DCT_METRICS_TOKEN = TOKEN
    settings.DCT_METRICS_ALLOW = []
    settings.REDIS_URL = redis_server.url
    monkeypatch.setattr(passes, "_client", None)
    redis.Redis.from_url(redis_server.url).delete(passes.STATS_KEY)
    return settings


def scrape(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(url + "/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from the text parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def make_job(owner, state: JobState, node: Node | None = None, **fields) -> Job:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    return Job.objects.create(
        submission=sub, owner=owner, name="t", executable="t.sh", state=state, node=node,
        submitted_at=fields.pop("submitted_at", timezone.now()), **fields,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_scrape_reports_jobs_nodes_capacity_mail_and_passes(live_server, configured):
    User = get_user_model()
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    now = timezone.now()
    node1 = Node.objects.create(
        name="node-1", state=NodeState.ONLINE, slots=8, memory_total_mb=16000,
        last_heartbeat=now - timedelta(seconds=3), gpus=[{"index": 0}, {"index": 1}],
    )  # fmt: skip
    Node.objects.create(name="node-2", state=NodeState.OFFLINE, slots=4, last_heartbeat=now - timedelta(minutes=5))
    Node.objects.create(name="node-3", state=NodeState.ONLINE, drained=True, slots=2, last_heartbeat=now)
    make_job(alice, JobState.QUEUED)
    make_job(alice, JobState.QUEUED)
    make_job(
        alice, JobState.RUNNING, node1, request_cpus=3, request_memory_mb=1000, request_gpus=1, gpu_indices=[1],
        submitted_at=now - timedelta(seconds=30), dispatched_at=now - timedelta(seconds=20),
    )  # fmt: skip
    make_job(
        bob, JobState.SUCCEEDED, submitted_at=now - timedelta(hours=2), dispatched_at=now - timedelta(minutes=61),
        run_seconds=120.0, email="bob@example.org",
    )  # fmt: skip
    stats = passes.PassStats()
    stats.record(0.003, 2)
    stats.record(0.2, 1)
    stats.record_outcomes({"placed": 2, "full": 1})
    assert stats.flush(passes.stats_client())
    assert passes.read_stats(passes.stats_client())["outcome:full"] == 1, "how the passes ended, for the bench"

    status, text = scrape(live_server.url)

    assert status == 200
    got = samples(text)
    assert got[("dct_jobs", (("state", "queued"), ("user", "alice")))] == 2
    assert got[("dct_jobs", (("state", "running"), ("user", "alice")))] == 1
    assert got[("dct_jobs", (("state", "succeeded"), ("user", "bob")))] == 1
    assert got[("dct_nodes", (("state", "online"),))] == 1
    assert got[("dct_nodes", (("state", "offline"),))] == 1
    assert got[("dct_nodes", (("state", "drained"),))] == 1
    assert got[("dct_node_cpus", (("node", "node-1"), ("use", "used")))] == 3
    assert got[("dct_node_cpus", (("node", "node-1"), ("use", "free")))] == 5
    assert got[("dct_node_memory_bytes", (("node", "node-1"), ("use", "used")))] == 1000 * 1024 * 1024
    assert got[("dct_node_gpus", (("node", "node-1"), ("use", "free")))] == 1
    assert 3 <= got[("dct_node_heartbeat_age_seconds", (("node", "node-1"),))] < 60
    assert got[("dct_node_heartbeat_age_seconds", (("node", "node-2"),))] >= 300
    # Waits: 10 s (alice's running job) and 59 min (bob's: inside a bucket, not on its edge, where the database's
    # date arithmetic may land a hair either side); bob's job ran 120 s.
    assert got[("dct_job_queue_wait_seconds_bucket", (("le", "15.0"),))] == 1
    assert got[("dct_job_queue_wait_seconds_bucket", (("le", "3600.0"),))] == 2
    assert got[("dct_job_queue_wait_seconds_count", ())] == 2
    assert got[("dct_job_queue_wait_seconds_sum", ())] == pytest.approx(3550, abs=1)
    assert got[("dct_job_run_seconds_bucket", (("le", "60.0"),))] == 0
    assert got[("dct_job_run_seconds_bucket", (("le", "300.0"),))] == 1
    assert got[("dct_mail_backlog", ())] == 1
    assert got[("dct_scheduler_pass_seconds_count", ())] == 2
    assert got[("dct_scheduler_pass_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("dct_scheduler_pass_seconds_sum", ())] == pytest.approx(0.203)
    assert got[("dct_scheduler_placements_total", ())] == 3


@pytest.mark.django_db(transaction=True)
def test_a_scraper_without_the_token_or_an_allowed_address_gets_403_and_no_data(live_server, configured):
    get_user_model().objects.create_user("alice")
    for token in (None, "wrong-token", ""):
        status, text = scrape(live_server.url, token)
        assert status == 403
        assert "dct_" not in text
    configured.DCT_METRICS_TOKEN = ""
    assert scrape(live_server.url, "")[0] == 403, "no token configured: an empty bearer is no key"


@pytest.mark.django_db(transaction=True)
def test_an_address_in_the_allow_list_needs_no_token(live_server, configured):
    import ipaddress

    configured.DCT_METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]
    assert scrape(live_server.url, None)[0] == 403, "127.0.0.1 is not in 10.0.0.0/8"
    configured.DCT_METRICS_ALLOW = [ipaddress.ip_network("127.0.0.0/8")]
    status, text = scrape(live_server.url, None)
    assert status == 200 and "dct_nodes" in text


@pytest.mark.django_db
def test_a_scrape_of_100000_jobs_stays_cheap(configured, capsys):
    """Not a timing assertion: it reports the time of one scrape's queries (README, Operations)."""
    from bench.rows import insert_jobs  # rows made by the database: bulk_create took most of this test

    users = [get_user_model().objects.create_user(f"user{i}") for i in range(20)]
    sub = Submission.objects.create(owner=users[0], source_name="job.txt", text="", job_count=1)
    now = timezone.now()
    states = " ".join(f"WHEN {k} THEN '{state.value}'" for k, state in enumerate(JobState))
    varying = {"state": f"CASE seq.n %% {len(JobState)} {states} END", "run_seconds": "seq.n %% 5000"}  # %%: SQL's %
    constant = {"name": "t", "executable": "t.sh", "submitted_at": now, "dispatched_at": now}
    insert_jobs(100_000, [(user.id, sub.id) for user in users], values=constant, varying=varying)
    queued = list(JobState).index(JobState.QUEUED)
    assert Job.objects.filter(state=JobState.QUEUED).count() == len(range(queued, 100_000, len(JobState)))
    started = time.perf_counter()
    text = metrics.generate_latest(metrics._registry).decode()
    elapsed = time.perf_counter() - started
    got = samples(text)
    assert sum(v for (name, _), v in got.items() if name == "dct_jobs") == 100_000
    assert got[("dct_job_run_seconds_count", ())] == 100_000
    with capsys.disabled():
        print(f"\none scrape of 100,000 jobs: {elapsed * 1000:.0f} ms")
