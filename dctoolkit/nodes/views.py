"""The nodes page: each machine's state and metrics, refreshed live."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from dctoolkit.jobs.serializers import nodes_payload

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
