"""GET /api/usage/: the fair-share table, as `usage --json` shows it."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .reports import usage_payload


class UsageRowSerializer(serializers.Serializer):
    """One row of reports.usage_payload, for the OpenAPI document."""

    user = serializers.CharField()
    usage = serializers.FloatField(help_text="decayed cpu-seconds")
    effective_usage = serializers.FloatField(help_text="usage divided by share")
    share = serializers.FloatField()
    running = serializers.IntegerField()
    queued = serializers.IntegerField()
    priority = serializers.IntegerField(help_text="1 goes first")


class UsageSerializer(serializers.Serializer):
    users = UsageRowSerializer(many=True)


class UsageView(APIView):
    @extend_schema(summary="Fair share: users, decayed usage, priority", responses={200: UsageSerializer})
    def get(self, request: Request) -> Response:
        return Response({"users": usage_payload(timezone.now())})
