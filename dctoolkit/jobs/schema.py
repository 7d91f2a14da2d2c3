"""Serializers that describe the API's JSON for the OpenAPI document only.

The JSON itself comes from serializers.py (`job_dict`), the one shape shared
with `--json`; these classes must say the same, and the schemathesis test
checks that every answer conforms to them.
"""

from __future__ import annotations

from rest_framework import serializers

from .models import JobState


class UsageAdviceSerializer(serializers.Serializer):
    comparison = serializers.CharField(help_text="asked for 4 cpus and 8.0 GB, used 1.1 cpus and 620 MB peak")
    suggestions = serializers.ListField(child=serializers.CharField(), help_text="e.g. request_cpus = 2")


class JobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    owner = serializers.CharField()
    state = serializers.ChoiceField(choices=JobState.choices)
    node = serializers.CharField(allow_null=True)
    exit_code = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField()
    reason = serializers.CharField(allow_blank=True, help_text="why it waits, or why it ended")
    submitted_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    run_seconds = serializers.FloatField(allow_null=True, help_text="wall seconds; counts up while running")
    cpu_seconds = serializers.FloatField(allow_null=True)
    max_rss_mb = serializers.FloatField(allow_null=True, help_text="peak memory")
    request_cpus = serializers.IntegerField()
    request_memory_mb = serializers.IntegerField()
    request_gpus = serializers.IntegerField()
    max_runtime_seconds = serializers.FloatField(allow_null=True)
    pinned_node = serializers.CharField(allow_null=True)
    process = serializers.IntegerField(help_text="$(Process) within its submission")
    submission = serializers.IntegerField()
    executable = serializers.CharField()
    arguments = serializers.ListField(child=serializers.CharField(allow_blank=True))
    gpu_indices = serializers.ListField(child=serializers.IntegerField())
    sandboxed = serializers.BooleanField(allow_null=True)
    usage_advice = UsageAdviceSerializer(allow_null=True, help_text="requested vs used; null before it ran")


class JobListSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True)


class JobPageSerializer(JobListSerializer):
    count = serializers.IntegerField(help_text="jobs on every page together")
    next = serializers.URLField(allow_null=True, help_text="the next page, or null on the last")


class SubmitSerializer(serializers.Serializer):
    submission = serializers.FileField(help_text="the submission file")
    files = serializers.ListField(
        child=serializers.FileField(), required=False, help_text="one per file it names, matched by file name"
    )


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="what is wrong and how to fix it (FILE:LINE: ... for a submission)")


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class OutputFileSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="relative to the job's outputs")
    size = serializers.IntegerField(help_text="bytes")


class FileListSerializer(serializers.Serializer):
    files = OutputFileSerializer(many=True)
