"""A DAG as the API, `./dct dag ID --json` and the portal show it: one shape, its API views, its page
(nodes, their states and the edges, drawn as server-side SVG in layers).

A user sees only their own DAGs (another's is 404, as for jobs); staff see all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dctoolkit.jobs.intake.dag import layers
from dctoolkit.jobs.models import Dag, DagNode, Job, JobState
from dctoolkit.jobs.scheduling.dagman import rerun_dag
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.web.serializers import DetailSerializer, ErrorSerializer, IsoTimeField
from dctoolkit.jobs.web.views import is_htmx


def visible_dags(user: AbstractBaseUser | AnonymousUser) -> Any:
    """The DAGs `user` may see: their own; staff, all; no one signed in, none (the jobs' rule)."""
    if not user.is_authenticated:
        return Dag.objects.none()
    # mypy: the project's user model is auth.User.
    return Dag.objects.all() if getattr(user, "is_staff", False) else Dag.objects.filter(owner=user)  # type: ignore[misc]


def node_state(node: DagNode, jobs: list[tuple[int, str]]) -> str:
    """A node's state as a job's: `waiting` before it is submitted; while it runs, its running phase's."""
    if node.state != JobState.QUEUED:
        return node.state
    current = [state for job_id, state in jobs if job_id >= node.phase_from]
    for state in (JobState.RUNNING, JobState.DISPATCHED, JobState.HELD, JobState.WAITING):
        if state in current:
            return JobState.RUNNING if state == JobState.DISPATCHED else state
    return JobState.QUEUED


@dataclass(frozen=True)
class NodeView:
    name: str
    state: str
    jobs: list[int]
    parents: list[str]
    phase: str
    retries: int
    exit_code: int | None
    reason: str
    is_final: bool


# One node of a DAG: its state (as a job's, or `waiting` before it is submitted), its jobs, its parents.
class DagNodeSerializer(serializers.Serializer):
    name = serializers.CharField()
    state = serializers.CharField(help_text="waiting, queued, held, running, succeeded, failed or cancelled")
    jobs = serializers.ListField(child=serializers.IntegerField(), help_text="its jobs (PRE, job, POST), oldest first")
    parents = serializers.ListField(child=serializers.CharField())
    phase = serializers.CharField(allow_blank=True, help_text="pre, job or post while it runs")
    retries = serializers.IntegerField(help_text="RETRY: retries used")
    exit_code = serializers.IntegerField(allow_null=True, help_text="the node's exit value (POST's if any)")
    reason = serializers.CharField(allow_blank=True)
    is_final = serializers.BooleanField()


# A DAG (DESIGN.md, "Pipelines"): `./dct dag ID --json` and GET /api/dags/{id}/.
class DagSerializer(serializers.Serializer):
    dag = serializers.IntegerField(source="id")
    name = serializers.CharField(source="source_name")
    owner = serializers.CharField(source="owner.username")
    state = serializers.CharField(help_text="running, succeeded, failed")
    exit_code = serializers.IntegerField(allow_null=True, help_text="the DAG's return value once ended")
    aborted = serializers.CharField(allow_blank=True, help_text="why ABORT-DAG-ON stopped it")
    created_at = IsoTimeField()
    finished_at = IsoTimeField(allow_null=True)
    nodes = DagNodeSerializer(many=True, source="node_views")


def node_views(dag: Dag) -> list[NodeView]:
    """The DAG's nodes as shown: two queries (the nodes, and every job of the DAG)."""
    jobs: dict[int, list[tuple[int, str]]] = {}
    for job_id, node_id, state in Job.objects.filter(dag=dag).order_by("id").values_list("id", "dag_node_id", "state"):
        jobs.setdefault(node_id, []).append((job_id, state))
    return [
        NodeView(
            n.name,
            node_state(n, jobs.get(n.id, [])),
            [job_id for job_id, _ in jobs.get(n.id, [])],
            list(n.parents),
            n.phase,
            n.retries,
            n.exit_code,
            n.reason,
            n.is_final,
        )
        for n in dag.nodes.order_by("id")
    ]


def dag_payload(dag: Dag) -> dict:
    """The DAG object (one copy of its shape for the API and the command line)."""
    dag.node_views = node_views(dag)  # type: ignore[attr-defined]
    return dict(DagSerializer(dag).data)


def dag_for(user: AbstractBaseUser | AnonymousUser, dag_id: int) -> Dag:
    dag = visible_dags(user).select_related("owner").filter(id=dag_id).first()
    if dag is None:
        raise Http404(f"no DAG {dag_id}")
    return dag


def rerun_refusal(dag: Dag) -> str:
    return f"dag {dag.id} is running: only a DAG that has ended can run again what did not succeed"


class DagView(APIView):
    @extend_schema(operation_id="dags_get", summary="One DAG", responses={200: DagSerializer, 404: DetailSerializer})
    def get(self, request: Request, dag_id: int) -> Response:
        return Response(dag_payload(dag_for(request.user, dag_id)))


class DagRerunView(APIView):
    @extend_schema(
        operation_id="dags_rerun",
        summary="Run again what did not succeed (DAGMan's rescue DAG)",
        request=None,
        responses={200: DagSerializer, 404: DetailSerializer, 409: ErrorSerializer},
    )
    def post(self, request: Request, dag_id: int) -> Response:
        dag = dag_for(request.user, dag_id)
        if rerun_dag(dag, timezone.now()) < 0:
            return Response({"error": rerun_refusal(dag)}, status=409)
        wake_scheduler()
        dag.refresh_from_db()
        return Response(dag_payload(dag))


# --- the portal's page ---------------------------------------------------------------------

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 44, 30, 50, 10
# A DAG with more nodes than this is shown as its table only: a drawing that size is no longer read.
MAX_DRAWN = 300
COLOURS = {
    "waiting": "#e9ecef",
    "queued": "#cfe2ff",
    "held": "#fff3cd",
    "running": "#9ec5fe",
    "succeeded": "#d1e7dd",
    "failed": "#f8d7da",
    "cancelled": "#dee2e6",
}


def dag_svg(nodes: list[NodeView]) -> str:
    """The DAG drawn: one row per layer (a node below its deepest parent), an edge per parent, each box
    coloured by state and linking to the node's last job.  Plain SVG made here: no script, no CDN."""
    grid = layers({n.name: n.parents for n in nodes if not n.is_final})
    grid += [[n.name for n in nodes if n.is_final]] if any(n.is_final for n in nodes) else []
    by_name = {n.name: n for n in nodes}
    width = max((len(row) for row in grid), default=1) * (BOX_W + GAP_X) + PAD * 2
    height = len(grid) * (BOX_H + GAP_Y) + PAD * 2
    where: dict[str, tuple[int, int]] = {}
    for depth, row in enumerate(grid):
        offset = (width - len(row) * (BOX_W + GAP_X)) // 2
        for i, name in enumerate(row):
            where[name] = (offset + i * (BOX_W + GAP_X) + GAP_X // 2, PAD + depth * (BOX_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="the DAG\'s nodes and edges" data-testid="dag-graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6c757d"/></marker></defs>',
    ]
    for node in nodes:
        for parent in node.parents:
            (px, py), (cx, cy) = where[parent], where[node.name]
            parts.append(
                f'<line class="edge" data-edge="{escape(parent)}->{escape(node.name)}" x1="{px + BOX_W // 2}" '
                f'y1="{py + BOX_H}" x2="{cx + BOX_W // 2}" y2="{cy}" stroke="#6c757d" marker-end="url(#arrow)"/>'
            )
    for name, (x, y) in where.items():
        node = by_name[name]
        box = (
            f'<g class="node" data-node="{escape(name)}" data-state="{node.state}">'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{COLOURS.get(node.state, "#fff")}" '
            f'stroke="{"#212529" if node.is_final else "#adb5bd"}"/>'
            f'<text x="{x + BOX_W // 2}" y="{y + 18}" text-anchor="middle" font-size="13">{escape(name[:20])}</text>'
            f'<text x="{x + BOX_W // 2}" y="{y + 35}" text-anchor="middle" font-size="11" fill="#495057">'
            f"{node.state}{' · FINAL' if node.is_final else ''}</text></g>"
        )
        if node.jobs:
            box = f'<a href="/jobs/{node.jobs[-1]}/">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return "".join(parts)


@login_required
def dag_page(request: HttpRequest, dag_id: int) -> HttpResponse:
    dag = dag_for(request.user, dag_id)
    nodes = node_views(dag)
    graph = dag_svg(nodes) if len(nodes) <= MAX_DRAWN else ""
    context = {"dag": dag, "nodes": nodes, "graph": graph, "ended": dag.state != "running", "max_drawn": MAX_DRAWN}
    # While it runs, the page asks for its live part every 2 s (htmx, as a job's page does).
    return render(request, "partials/dag_live.html" if is_htmx(request) else "dag.html", context)


@login_required
@require_POST
def dag_rerun(request: HttpRequest, dag_id: int) -> HttpResponse:
    dag = dag_for(request.user, dag_id)
    count = rerun_dag(dag, timezone.now())
    if count < 0:
        messages.error(request, rerun_refusal(dag))
    else:
        wake_scheduler()
        messages.success(request, f"DAG {dag.id}: {count} node{'' if count == 1 else 's'} to run again.")
    return redirect("dag-detail", dag_id=dag.id)
