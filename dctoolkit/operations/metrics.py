"""GET /metrics: the cluster in Prometheus' text format, read from the database when scraped.

Each scrape runs a handful of GROUP BY queries (jobs by state and user, two
histograms summed in SQL, capacity in use per node, the mail backlog) and
reads the scheduler's pass statistics from Redis (`passes.py`); nothing is
counted on the job path.  Only a scraper with the token
(`DCT_METRICS_TOKEN`) or an allowed address (`DCT_METRICS_ALLOW`) gets an
answer; everyone else gets 403 and no data.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator, Sequence
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, FloatField, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from dctoolkit.jobs.models import Job
from dctoolkit.jobs.notify import due_batches, due_jobs
from dctoolkit.jobs.scheduling.snapshot import Capacity, capacity_in_use
from dctoolkit.nodes.models import Node, NodeState
from dctoolkit.operations.passes import PASS_BUCKETS, read_stats, stats_client

# Upper bounds, in seconds, of the queue-wait and run-time histograms (then +Inf).
WAIT_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
RUN_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)


class ClusterCollector(Collector):
    """Every `dct_` metric, computed from the database (and Redis) at each scrape."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield jobs_by_state_and_user()
        yield duration_histogram(
            "dct_job_queue_wait_seconds",
            "Time from submission to dispatch, over every job dispatched so far.",
            Job.objects.filter(dispatched_at__isnull=False).annotate(
                value=seconds_between("submitted_at", "dispatched_at")
            ),
            WAIT_BUCKETS,
        )
        yield duration_histogram(
            "dct_job_run_seconds",
            "Run time of every job that ran to its end so far.",
            Job.objects.filter(run_seconds__isnull=False).annotate(value=F("run_seconds")),
            RUN_BUCKETS,
        )
        yield from node_metrics(list(Node.objects.all()), capacity_in_use(), now)
        backlog = GaugeMetricFamily("dct_mail_backlog", "End-of-job mails and batch digests due and not yet sent.")
        backlog.add_metric([], due_jobs().count() + due_batches().count())
        yield backlog
        yield from scheduler_metrics(read_stats(stats_client()))


def jobs_by_state_and_user() -> Metric:
    family = GaugeMetricFamily("dct_jobs", "Jobs in each state, by owner.", labels=["state", "user"])
    rows = Job.objects.order_by().values_list("state", "owner__username").annotate(count=Count("id"))
    for state, user, count in rows:
        family.add_metric([state, user], count)
    return family


def seconds_between(start: str, end: str) -> RawSQL:
    """Seconds from column `start` to column `end`, in the database's own arithmetic.

    Django's duration arithmetic is a Python function on SQLite, called for
    every row and bucket: a scrape of 100,000 jobs took 12 s with it.
    """
    vendor = connection.vendor
    if vendor == "sqlite":
        sql = f"((julianday({end}) - julianday({start})) * 86400.0)"
    elif vendor == "postgresql":
        sql = f"EXTRACT(EPOCH FROM ({end} - {start}))"
    else:  # MySQL and MariaDB
        sql = f"(TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1000000.0)"
    return RawSQL(sql, [], output_field=FloatField())  # noqa: S611 (column names of our own, no input)


def duration_histogram(name: str, text: str, rows: QuerySet, bounds: Sequence[float]) -> HistogramMetricFamily:
    """A histogram of the annotation `value` (seconds) of `rows`, its buckets counted by one SQL aggregate."""
    sums = rows.order_by().aggregate(
        total=Count("id"),
        summed=Sum("value"),
        **{f"le{i}": Count("id", filter=Q(value__lte=bound)) for i, bound in enumerate(bounds)},
    )
    summed = sums["summed"] or 0
    buckets = [(format_bound(bound), sums[f"le{i}"]) for i, bound in enumerate(bounds)]
    buckets.append(("+Inf", sums["total"]))
    return HistogramMetricFamily(name, text, buckets=buckets, sum_value=float(summed))


def format_bound(bound: float) -> str:
    return str(float(bound))


def node_state(node: Node) -> str:
    if node.state != NodeState.ONLINE:
        return "offline"
    return "drained" if node.drained else "online"


def node_metrics(nodes: list[Node], used: dict[int, Capacity], now: datetime) -> Iterator[Metric]:
    by_state = GaugeMetricFamily("dct_nodes", "Nodes online (taking jobs), drained or offline.", labels=["state"])
    counts = {"online": 0, "drained": 0, "offline": 0}
    cpus = GaugeMetricFamily("dct_node_cpus", "CPUs (slots) of a node, free or used by jobs.", labels=["node", "use"])
    memory = GaugeMetricFamily(
        "dct_node_memory_bytes", "Memory of a node, free or requested by its jobs.", labels=["node", "use"]
    )
    gpus = GaugeMetricFamily("dct_node_gpus", "GPUs of a node, free or used by jobs.", labels=["node", "use"])
    age = GaugeMetricFamily(
        "dct_node_heartbeat_age_seconds", "Seconds since the node's last heartbeat.", labels=["node"]
    )
    for node in nodes:
        counts[node_state(node)] += 1
        taken = used.get(node.id, Capacity())
        gpu_count = len(node.gpus or [])
        for family, total, in_use, scale in (
            (cpus, node.slots, taken.cpus, 1),
            (memory, node.memory_total_mb, taken.memory_mb, 1024 * 1024),
            (gpus, gpu_count, len(taken.gpus), 1),
        ):
            family.add_metric([node.name, "used"], in_use * scale)
            family.add_metric([node.name, "free"], max(total - in_use, 0) * scale)
        if node.last_heartbeat is not None:
            age.add_metric([node.name], max((now - node.last_heartbeat).total_seconds(), 0.0))
    for state, count in counts.items():
        by_state.add_metric([state], count)
    yield from (by_state, cpus, memory, gpus, age)


def scheduler_metrics(stats: dict[str, float] | None) -> Iterator[Metric]:
    """The scheduler's pass histogram and placements; nothing when Redis did not answer."""
    if stats is None:
        return
    buckets, running = [], 0.0
    for i, bound in enumerate(PASS_BUCKETS):
        running += stats.get(f"bucket{i}", 0.0)
        buckets.append((format_bound(bound), running))
    buckets.append(("+Inf", stats.get("passes", 0.0)))
    yield HistogramMetricFamily(
        "dct_scheduler_pass_seconds",
        "Duration of the scheduler's passes (every scheduler process).",
        buckets=buckets,
        sum_value=stats.get("seconds", 0.0),
    )
    placements = CounterMetricFamily("dct_scheduler_placements", "Jobs the scheduler's passes dispatched.")
    placements.add_metric([], stats.get("placements", 0.0))
    yield placements


_registry = CollectorRegistry(auto_describe=False)
_registry.register(ClusterCollector())


def exposition() -> bytes:
    """The body of one scrape: every metric, in Prometheus' text format."""
    return generate_latest(_registry)


def scraper_allowed(request: HttpRequest) -> bool:
    """The bearer token matches DCT_METRICS_TOKEN, or the peer's address is in DCT_METRICS_ALLOW."""
    token = settings.DCT_METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if token and sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].strip().encode(), token.encode()):
        return True
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
        peer = peer.ipv4_mapped  # ::ffff:10.0.0.5 from a dual-stack socket is 10.0.0.5
    return any(peer in network for network in settings.DCT_METRICS_ALLOW)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not scraper_allowed(request):
        return HttpResponseForbidden(
            "Forbidden: /metrics answers a scraper with DCT_METRICS_TOKEN (Authorization: Bearer) "
            "or an address in DCT_METRICS_ALLOW.\n",
            content_type="text/plain",
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
