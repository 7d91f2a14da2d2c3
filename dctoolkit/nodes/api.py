"""GET /api/nodes/: the nodes, as `nodes --json` shows them."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dctoolkit.jobs.web.serializers import NodeListSerializer, nodes_payload


class NodesView(APIView):
    @extend_schema(summary="The nodes, their state and metrics", responses={200: NodeListSerializer})
    def get(self, request: Request) -> Response:
        return Response({"nodes": nodes_payload(timezone.now())})
