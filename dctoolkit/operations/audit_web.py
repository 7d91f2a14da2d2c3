"""The audit trail for staff: GET /api/audit/, the portal's Audit page, and the one JSON shape that
`./dct audit --json` prints too (AuditEventSerializer)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dctoolkit.jobs.web.serializers import DetailSerializer, ErrorSerializer
from dctoolkit.lib.ids import bounded_int
from dctoolkit.lib.pages import portal_page, read_page
from dctoolkit.operations.audit import AuditFilterError, filter_events, summary
from dctoolkit.operations.models import AuditAction, AuditEvent

STAFF_ONLY = (
    "the audit trail is for staff; ask an operator (who can read the server's secret key), "
    "or use a staff account's API token (DCT_SERVER, DCT_TOKEN)"
)
PER_PAGE = 50
MAX_PAGE = 10_000_000
FILTERS = ("user", "action", "since")


class AuditEventSerializer(serializers.ModelSerializer):
    """One event: when, who (null: the system), what, to which target, and the details."""

    actor = serializers.SerializerMethodField(help_text="the user name; null for the system")
    summary = serializers.SerializerMethodField(help_text="the details in one line, for a person")

    class Meta:
        model = AuditEvent
        fields = ("id", "at", "actor", "action", "target_kind", "target", "details", "summary")

    def get_actor(self, event: AuditEvent) -> str | None:
        return event.actor_name or None

    def get_summary(self, event: AuditEvent) -> str:
        return summary(event.details)


class AuditListSerializer(serializers.Serializer):
    events = AuditEventSerializer(many=True)
    count = serializers.IntegerField(
        help_text="events on every page together, counted up to 10,000 (as the history pages): 10,001 is more"
    )
    count_exact = serializers.BooleanField(help_text="false when `count` is the cap plus one: more than the cap")
    next = serializers.URLField(allow_null=True, help_text="the next page, or null on the last")


def audit_rows(events: QuerySet[AuditEvent] | list[AuditEvent]) -> list[dict]:
    """Events as every reader gets them (the API, `./dct audit --json`)."""
    return list(AuditEventSerializer(events, many=True).data)


class StaffOnly(IsAdminUser):
    message = STAFF_ONLY


class AuditView(APIView):
    permission_classes = [StaffOnly]  # anyone else is answered 403 (no token: 401)

    @extend_schema(
        operation_id="audit_list",
        summary="The audit trail, newest first (staff only)",
        parameters=[
            OpenApiParameter("user", str, description="the actor's user name; 'system' for no actor"),
            OpenApiParameter("action", str, description=", ".join(AuditAction.values)),
            OpenApiParameter("since", str, description="a date, an ISO time, or an age such as 7d"),
            OpenApiParameter("page", int, description="page number, from 1"),
        ],
        responses={200: AuditListSerializer, 400: ErrorSerializer, 403: DetailSerializer},
    )
    def get(self, request: Request) -> Response:
        page = bounded_int((request.query_params.get("page") or "1").strip(), 1, MAX_PAGE)
        if page is None:
            return Response({"error": f"page must be a whole number from 1 to {MAX_PAGE:,}"}, status=400)
        try:
            events = filter_events(AuditEvent.objects.all(), request.query_params)
        except AuditFilterError as exc:
            return Response({"error": str(exc)}, status=400)
        # Staff only, but the trail grows by every action: a capped count (lib/pages), never a COUNT of all.
        found = read_page(events, page, PER_PAGE)
        following = None
        if found.has_next:
            params = request.query_params.copy()
            params["page"] = str(page + 1)
            following = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        rows = audit_rows(found.object_list)
        return Response({"events": rows, "count": found.count, "count_exact": found.exact, "next": following})


@login_required
def audit_page(request: HttpRequest) -> HttpResponse:
    """Staff only (anyone else: 404, as for a page that does not exist): the trail, filtered, 50 a page."""
    if not request.user.is_staff:
        raise Http404("no such page")
    search = {key: request.GET.get(key, "").strip() for key in FILTERS}
    events = AuditEvent.objects.all()
    error = ""
    try:
        events = filter_events(events, search)
    except AuditFilterError as exc:
        error, events = str(exc), events.none()
    page = portal_page(events, request.GET.get("page"), PER_PAGE)
    context = {
        "page": page,
        "events": [(event, summary(event.details)) for event in page.object_list],
        "search": search,
        "query": urlencode({k: v for k, v in search.items() if v}),
        "actions": AuditAction.values,
        "error": error,
    }
    return render(request, "audit.html", context)
