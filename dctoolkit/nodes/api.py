"""GET /api/nodes/: the nodes, as `nodes --json` shows them."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dctoolkit.jobs.serializers import nodes_payload


class NodeSerializer(serializers.Serializer):
    """The node shape of serializers.node_dict, for the OpenAPI document."""

    name = serializers.CharField()
    state = serializers.CharField(help_text="available, busy, draining, drained, offline, ...")
    cpus = serializers.IntegerField()
    threads = serializers.IntegerField()
    slots = serializers.IntegerField()
    memory_total_mb = serializers.IntegerField()
    memory_available_mb = serializers.IntegerField()
    disk_free_mb = serializers.IntegerField()
    gpus = serializers.ListField(child=serializers.DictField())
    cuda = serializers.CharField(allow_null=True)
    load = serializers.FloatField()
    running_jobs = serializers.IntegerField()
    free_cpus = serializers.IntegerField()
    free_memory_mb = serializers.IntegerField()
    free_gpus = serializers.IntegerField()
    last_heartbeat = serializers.DateTimeField(allow_null=True)
    sandbox = serializers.BooleanField()
    accepts_jobs = serializers.BooleanField()
    containers = serializers.ListField(child=serializers.CharField())
    hostname = serializers.CharField(allow_blank=True)


class NodeListSerializer(serializers.Serializer):
    nodes = NodeSerializer(many=True)


class NodesView(APIView):
    @extend_schema(summary="The nodes, their state and metrics", responses={200: NodeListSerializer})
    def get(self, request: Request) -> Response:
        return Response({"nodes": nodes_payload(timezone.now())})
