"""GET /api/usage/: the fair-share table and the accounting groups, as `usage --json` shows them."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dctoolkit.accounts.serializers import UsageSerializer, group_rows, usage_rows


class UsageView(APIView):
    @extend_schema(summary="Fair share: users and groups, decayed usage, priority", responses={200: UsageSerializer})
    def get(self, request: Request) -> Response:
        now = timezone.now()
        return Response({"users": usage_rows(now), "groups": group_rows(now)})
