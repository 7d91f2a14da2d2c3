"""The nodes page: each machine's state and metrics, refreshed live."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from dctoolkit.jobs.models import STARTED_STATES, Attempt, Job
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.web.serializers import nodes_payload
from dctoolkit.nodes import lending
from dctoolkit.nodes.models import Node

# Order of the state groups on the page: the ones that take work first.
STATE_ORDER = ("available", "busy", "draining", "drained", "refusing", "offline")


@login_required
def nodes_page(request: HttpRequest) -> HttpResponse:
    nodes = nodes_payload(timezone.now())
    nodes.sort(key=lambda n: (STATE_ORDER.index(n["state"]) if n["state"] in STATE_ORDER else 99, n["name"]))
    counts = {state: sum(n["state"] == state for n in nodes) for state in STATE_ORDER}
    context = {"nodes": nodes, "counts": {s: c for s, c in counts.items() if c}}
    live = request.headers.get("HX-Request") == "true"
    return render(request, "partials/nodes_live.html" if live else "nodes.html", context)


# Runs shown on a desktop's page, newest first.
DESKTOP_HISTORY = 50


def _desktop(request: HttpRequest, name: str) -> Node:
    # Another's desktop, or a node that is no desktop, is not there at all (404), as another's job is.
    node = Node.objects.filter(name=name, policy="desktop").first()
    if node is None or not lending.may_manage(request.user, node):
        raise Http404("no such desktop")
    return node


@login_required
def desktop_page(request: HttpRequest, name: str) -> HttpResponse:
    """A desktop node's page for its owner: when it lends, what runs and ran on it, and "I need it now"."""
    node = _desktop(request, name)
    now = timezone.now()
    running = list(Job.objects.filter(node=node, state__in=STARTED_STATES).select_related("owner").order_by("id"))
    ran = list(
        Attempt.objects.filter(node=node.name)
        .select_related("job__owner")
        .order_by("-finished_at", "-id")[:DESKTOP_HISTORY]
    )
    context = {"node": node, "running": running, "ran": ran, "now": now}
    return render(request, "desktop.html", context)


@login_required
@require_POST
def desktop_reclaim(request: HttpRequest, name: str) -> HttpResponse:
    """ "I need it now": the desktop takes no new job, and its jobs are vacated within a heartbeat."""
    node = _desktop(request, name)
    lending.reclaim(node, actor=request.user)
    wake_scheduler()  # the vacated jobs go back to the queue: a pass places them elsewhere
    messages.success(
        request, f"{node.name} is yours: it takes no new jobs, and the jobs on it leave within a few seconds."
    )
    return redirect("desktop", name=node.name)
