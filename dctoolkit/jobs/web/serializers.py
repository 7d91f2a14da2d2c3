"""The one JSON shape of each thing the API, `--json` and the portal show, and the OpenAPI schema says.

Each shape is one DRF serializer (explicit fields, no ModelSerializer): the
views answer `Serializer(...).data`, the commands print the same, and
drf-spectacular describes the same class, so the document cannot drift from
what is sent.  Fields that are computed (a running job's `run_seconds`, a
waiting job's `reason`) read `now` and the reasons from the serializer's
context.

The serializers are explained in comments, not docstrings: drf-spectacular
copies a serializer's docstring (or its base class's) into the OpenAPI
document, which is written for the API's users.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models
from rest_framework import serializers

from dctoolkit.accounts.fairshare import charged_start
from dctoolkit.accounts.limits import held_back, held_back_by_group
from dctoolkit.accounts.models import Group
from dctoolkit.accounts.usage import group_totals, standings
from dctoolkit.jobs import gputally
from dctoolkit.jobs.intake.advice import Usage, compare
from dctoolkit.jobs.models import STARTED_STATES, DagNode, Job, JobState
from dctoolkit.jobs.rows import JobRow
from dctoolkit.jobs.scheduling.matching import wants_from
from dctoolkit.jobs.scheduling.reasons import NodeView, Request, WaitFacts, explain_wait
from dctoolkit.jobs.scheduling.snapshot import Capacity, capacity_in_use, free_node, node_attrs
from dctoolkit.jobs.scheduling.upstream import attempt_histories, depends_on, waiting_reasons
from dctoolkit.jobs.scheduling.waiting import QueueOrder, ahead_own, queue_order
from dctoolkit.lib.collector import collector_paused
from dctoolkit.nodes.liveness import display_state, is_lost
from dctoolkit.nodes.models import Node, NodeState


def finite(value: float | None) -> float | None:
    """A stored float as JSON can carry it: inf and nan (rows from before the bounds) become None."""
    return value if value is None or math.isfinite(value) else None


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with time zone and microseconds (the contract's time format)."""
    return value.isoformat(timespec="microseconds") if value else None


def run_seconds(job: Job, now: datetime) -> float | None:
    """Seconds it ran: counts up while running, stands still while suspended, fixed once ended."""
    if job.state in STARTED_STATES and job.started_at:
        since = charged_start(job.started_at, job.suspended_seconds, job.suspended_at, now) or job.started_at
        return round(max((now - since).total_seconds(), 0.0), 3)
    return job.run_seconds


# --- how a shape is written out -------------------------------------------------------


class ContextField:
    """A field whose value needs the serializer's context (`now`, the reasons): `represent` gets it."""

    def represent(self, value: Any, context: dict) -> Any:
        raise NotImplementedError

    def to_representation(self, value: Any) -> Any:
        # mypy: the field is also a DRF Field, which has `context`.
        return self.represent(value, self.context)  # type: ignore[attr-defined]


# A read-only shape: its declared fields are the keys, in order, for the JSON and the schema alike.
#
# Writing one out reads each field's source (`a.b`, or `*` for the whole
# object) with getattr (a key of a dict) and hands it to that field's to_representation
# (None stays None), as DRF's own loop does; but from a plan made once per
# class, not from the fields DRF deep-copies for every serializer made.
# Measured (100 jobs, 44 of them waiting): 8.5 ms as plain dictionaries,
# 9.3 ms so; DRF's own loop cost 3-4x the dictionaries on the jobs' part.
#
# Many at once (`many=True`: `ShapeListSerializer`) it goes column by column:
# each field's values for every object, then one dict per object.  A bulk
# cancel answers 10,000 jobs of 38 keys; per object and per key the loop's
# own steps cost as much as the values (bench/README.md, "Scale").
class ShapeSerializer(serializers.Serializer):
    _plans: dict[type, list[PlanStep]] = {}

    class Meta:
        list_serializer_class: type[serializers.ListSerializer]  # ShapeListSerializer, set below it

    @classmethod
    def plan(cls) -> list[PlanStep]:
        plan = ShapeSerializer._plans.get(cls)
        if plan is None:
            plan = [PlanStep.of(name, field) for name, field in cls._declared_fields.items()]
            ShapeSerializer._plans[cls] = plan
        return plan

    def to_representation(self, instance: Any) -> dict:
        context = self.context
        mapping = isinstance(instance, dict)
        out: dict[str, Any] = {}
        for step in self.plan():
            if step.read is None:
                value = instance
            elif mapping:
                value = instance
                for key in step.path:
                    value = value[key]
            else:
                value = step.read(instance)
            if value is None:
                out[step.name] = None
            elif step.with_context:
                out[step.name] = step.field.represent(value, context)  # type: ignore[attr-defined]
            else:
                out[step.name] = step.field.to_representation(value)
        return out

    def to_representations(self, instances: list[Any]) -> list[dict]:
        """`[self.to_representation(i) for i in instances]`, column by column (objects, not dicts)."""
        if any(isinstance(i, dict) for i in instances):
            return [self.to_representation(i) for i in instances]
        context, names, columns = self.context, [], []
        for step in self.plan():
            values = instances if step.read is None else list(map(step.read, instances))
            if step.with_context:
                represent = step.field.represent  # type: ignore[attr-defined]
                columns.append([None if v is None else represent(v, context) for v in values])
            elif step.by_value:  # written once per distinct object: a batch's rows share theirs (jobs.rows)
                write = step.field.to_representation
                distinct = {id(v): v for v in values}
                written = {key: None if v is None else write(v) for key, v in distinct.items()}
                columns.append([written[id(v)] for v in values])
            else:
                write = step.field.to_representation
                columns.append([None if v is None else write(v) for v in values])
            names.append(step.name)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


class ShapeListSerializer(serializers.ListSerializer):
    """A list of one shape (`ShapeSerializer(many=True)`), written out column by column."""

    def to_representation(self, data: Any) -> list[dict]:
        items = list(data.all() if isinstance(data, models.manager.BaseManager) else data)
        return cast(ShapeSerializer, self.child).to_representations(items)


ShapeSerializer.Meta.list_serializer_class = ShapeListSerializer


@dataclass(frozen=True)
class PlanStep:
    """One key of a shape: its name, where its value comes from, the field that writes it."""

    name: str
    path: tuple[str, ...]  # () for source="*": the whole object
    read: Callable[[Any], Any] | None  # attrgetter of the path (None for the whole object)
    field: serializers.Field
    with_context: bool
    by_value: bool  # the field's output depends on the value alone (BY_VALUE): one call per distinct object

    @classmethod
    def of(cls, name: str, field: serializers.Field) -> PlanStep:
        source = field.source if isinstance(field.source, str) and field.source else name
        path = () if source == "*" else tuple(source.split("."))
        read = attrgetter(source) if path else None
        by_value = type(field) in BY_VALUE and bool(path)
        return cls(name, path, read, field, isinstance(field, ContextField), by_value)


# --- fields the shapes share ------------------------------------------------------


class IsoTimeField(serializers.DateTimeField):
    """A time as the contract writes it (`iso`): not DRF's format, which writes UTC as `Z`."""

    def to_representation(self, value: datetime) -> Any:
        return iso(value)


class FiniteFloatField(serializers.FloatField):
    """A stored float, null when unknown or not finite (`finite`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value: float) -> Any:
        return finite(value)


class BlankAsNullField(serializers.CharField):
    """A text column where blank means none: null in JSON."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, **kwargs)

    def to_representation(self, value: str) -> Any:
        return value or None


class StoredListField(serializers.ListField):
    """A JSON list column sent as stored; `child` describes its items to the schema."""

    def to_representation(self, data: list) -> list:
        return list(data)


class StoredDictField(serializers.DictField):
    """A JSON object column sent as stored; `child` describes its values to the schema."""

    def to_representation(self, data: dict) -> dict:
        return dict(data) if isinstance(data, dict) else {}


# --- job -----------------------------------------------------------------------------


class NodeNameField(serializers.CharField):
    """The node a job runs or ran on, by name; null before it was dispatched."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", allow_null=True, **kwargs)

    def to_representation(self, job: Any) -> Any:
        return job.node.name if job.node_id else None


class ReasonField(ContextField, serializers.CharField):
    """Why a job waits (context["reasons"], worked out for the page) or why it ended (stored)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", allow_blank=True, **kwargs)

    def represent(self, job: Job, context: dict) -> str:
        if job.state == JobState.WAITING:
            waits = context.get("waits")
            waits = waiting_reasons([job], context["now"]) if waits is None else waits
            if job.id in waits:
                return waits[job.id]
        reason = context.get("reasons", {}).get(job.id)
        return job.reason if reason is None else reason


class RunSecondsField(ContextField, FiniteFloatField):
    """Wall seconds: counts up (to context["now"]) while running, fixed once ended."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", **kwargs)

    def represent(self, job: Job, context: dict) -> float | None:
        return finite(run_seconds(job, context["now"]))


class DagNodeNameField(ContextField, serializers.CharField):
    """The name of the DAG node a job runs (context["dag_nodes"]: node id -> name, read for a page of
    jobs at once); null for a job of no DAG."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", allow_null=True, **kwargs)

    def represent(self, job: Job, context: dict) -> str | None:
        if not job.dag_node_id:
            return None
        names = context.get("dag_nodes")
        if names is not None and job.dag_node_id in names:
            return names[job.dag_node_id]
        return job.dag_node.name if job.dag_node else None


class GroupNameField(ContextField, serializers.CharField):
    """The accounting group a job charges (accounting_group = NAME, else its owner's first group); null for
    none.  The names of every group are read once per answer (context["group_names"]): groups are few."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", allow_null=True, **kwargs)

    def represent(self, job: Job, context: dict) -> str | None:
        if not job.accounting_group_id:
            return None
        names = context.get("group_names")
        if names is None or job.accounting_group_id not in names:
            names = context["group_names"] = dict(Group.objects.values_list("id", "name"))
        return names.get(job.accounting_group_id)


class SuspendedSecondsField(ContextField, FiniteFloatField):
    """Seconds suspended in this attempt: counts up (to context["now"]) while suspended."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", **kwargs)

    def represent(self, job: Job, context: dict) -> float | None:
        if not job.suspended_at and job.suspended_seconds == 0:  # never suspended: most jobs
            return 0.0
        spell = (context["now"] - job.suspended_at).total_seconds() if job.suspended_at else 0.0
        return finite(round(job.suspended_seconds + max(spell, 0.0), 3))


class ExecutableField(serializers.CharField):
    """The executable's file name (its folder in the submission is the server's business)."""

    def to_representation(self, value: str) -> str:
        return value.rsplit("/", 1)[-1]


# Fields whose to_representation is a function of the value alone (no context, no state) and costs more than
# looking it up: a column of a list is written once per distinct value object (the 10,000 jobs of a batch
# share one submit time; `isoformat` costs more than a dict lookup, a CharField's `str` does not).
BY_VALUE = (IsoTimeField,)


# Requested versus used, and a better request when the gap is large; null before the job ran.
#
# Its source is the whole job: it compares what the job asked for with what it used.
class UsageAdviceSerializer(ShapeSerializer):
    comparison = serializers.CharField(help_text="asked for 4 cpus and 8.0 GB, used 1.1 cpus and 620 MB peak")
    suggestions = StoredListField(child=serializers.CharField(), help_text="e.g. request_cpus = 2")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", allow_null=True, **kwargs)

    # mypy: the answer is None (JSON null) before the job ran.
    def to_representation(self, job: Job) -> dict | None:  # type: ignore[override]
        if job.cpu_seconds is None and not job.max_rss_mb:
            return None  # nothing measured: `compare`'s "never ran", without making its Usage (10,000 jobs)
        advice = compare(
            Usage(
                job.request_cpus,
                job.request_memory_mb,
                finite(job.run_seconds),
                finite(job.cpu_seconds),
                finite(job.max_rss_mb),
            )
        )
        return super().to_representation(advice) if advice else None


# A GPU job's utilisation (gpuuse.utilization); null for a job holding no GPUs.
class GpuUtilizationSerializer(ShapeSerializer):
    mean = FiniteFloatField(help_text="percent, mean over the run (this attempt); null before a sample")
    last_10_minutes = FiniteFloatField(help_text="percent, mean over the last 10 minutes")
    samples = serializers.IntegerField(help_text="samples taken (one a heartbeat)")
    idle_seconds = FiniteFloatField(help_text="how long its GPUs have stayed under DCT_GPU_IDLE_PERCENT")
    idle = serializers.CharField(
        allow_null=True, help_text="job 812 holds 2 GPUs at 0% for 45 min; that costs 16 GPU-units an hour"
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", allow_null=True, **kwargs)

    # mypy: the answer is None (JSON null) for a job holding no GPUs.
    def to_representation(self, job: Job) -> dict | None:  # type: ignore[override]
        shape = gputally.utilization(job)
        return super().to_representation(shape) if shape else None


# One edge of `depends_on`: the parent job and the kind of condition.
class DependencySerializer(serializers.Serializer):
    job = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["after_ok", "after_any", "after_fail"])


# One ended run of `attempt_history`.
class AttemptSerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    node = serializers.CharField(allow_null=True)
    state = serializers.CharField(help_text="how this run ended: succeeded, failed, cancelled, held or lost")
    exit_code = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    started_at = serializers.CharField(allow_null=True, help_text="ISO time")
    finished_at = serializers.CharField(help_text="ISO time")


class PerJobListField(ContextField, serializers.ListField):
    """A list read for many jobs at once (context[key]: job id -> list), or for this one job alone."""

    def __init__(self, key: str, read: Callable[[list[int]], dict[int, list[dict]]], **kwargs: Any) -> None:
        self.key, self.read = key, read
        super().__init__(source="*", **kwargs)

    def represent(self, job: Job, context: dict) -> list[dict]:
        found = context.get(self.key)
        return (self.read([job.id]) if found is None else found).get(job.id, [])


# The job object (DESIGN.md): every answer about a job, in the API, `--json` and the portal.
#
# Context: `now` (for a running job's run_seconds) and optionally
# `reasons` (job id -> why it waits; jobs_payload works them out).
class JobSerializer(ShapeSerializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    owner = serializers.CharField(source="owner.username")
    state = serializers.ChoiceField(choices=JobState.choices)
    node = NodeNameField()
    exit_code = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField()
    reason = ReasonField(help_text="why it waits, or why it ended")
    submitted_at = IsoTimeField()
    started_at = IsoTimeField(allow_null=True)
    finished_at = IsoTimeField(allow_null=True)
    run_seconds = RunSecondsField(help_text="seconds it ran; counts up while running, not while suspended")
    suspended_seconds = SuspendedSecondsField(
        help_text="seconds this attempt spent suspended (a desktop node's owner was back): not charged"
    )
    cpu_seconds = FiniteFloatField()
    max_rss_mb = FiniteFloatField(help_text="peak memory")
    request_cpus = serializers.IntegerField()
    request_memory_mb = serializers.IntegerField()
    request_gpus = serializers.IntegerField()
    max_runtime_seconds = FiniteFloatField()
    pinned_node = BlankAsNullField()
    process = serializers.IntegerField(help_text="$(Process) within its submission")
    submission = serializers.IntegerField(source="submission_id")
    executable = ExecutableField()
    arguments = StoredListField(child=serializers.CharField(allow_blank=True))
    gpu_indices = StoredListField(child=serializers.IntegerField())
    cpu_indices = StoredListField(
        child=serializers.IntegerField(), help_text="the node's CPU cores its attempt is pinned to (set as it starts)"
    )
    gpu_utilization = GpuUtilizationSerializer(help_text="how busy its GPUs are; null for a job holding none")
    sandboxed = serializers.BooleanField(allow_null=True)
    usage_advice = UsageAdviceSerializer(help_text="requested vs used; null before it ran")
    depends_on = PerJobListField(
        "parents", depends_on, child=DependencySerializer(), help_text="the jobs it waits for (after_ok, ...)"
    )
    attempt_history = PerJobListField(
        "history", attempt_histories, child=AttemptSerializer(), help_text="every run that ended, oldest first"
    )
    retries = serializers.IntegerField(help_text="retries used (max_retries)")
    start_after = IsoTimeField(allow_null=True, help_text="waits until then (start_after, deferral_time, --begin)")
    max_running = serializers.IntegerField(
        allow_null=True, help_text="at most this many of its submission dispatched or running (max_running, %K)"
    )
    attributes = StoredDictField(
        child=serializers.CharField(allow_blank=True), help_text="HTCondor's +Attr and MY.Attr, as written"
    )
    dag = serializers.IntegerField(source="dag_id", allow_null=True, help_text="the DAG it is a node's job of")
    dag_node = DagNodeNameField(help_text="the DAG node it runs (its job, PRE or POST script)")
    accounting_group = GroupNameField(
        help_text="the group it charges (accounting_group, --account, -A; else the owner's first)"
    )


# `{"jobs": [...]}`: what submitting answers, and cancel/hold/release --json.
class JobListSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True)


def job_dict(job: Job, now: datetime, reason: str | None = None) -> dict:
    """A job as the contract shapes it (`reason`: why it waits, or why it ended)."""
    return JobSerializer(context={"now": now, "reasons": {} if reason is None else {job.id: reason}}).to_representation(
        job
    )


def usage_advice(job: Job) -> dict | None:
    """Requested versus used, and a better request when the gap is large; None before it ran."""
    return UsageAdviceSerializer().to_representation(job)


# --- output files ------------------------------------------------------------------


class OutputFileSerializer(ShapeSerializer):
    path = serializers.CharField(help_text="relative to the job's outputs")
    size = serializers.IntegerField(help_text="bytes")


# `{"files": [...]}`: GET /api/jobs/{id}/files/.
class FileListSerializer(serializers.Serializer):
    files = OutputFileSerializer(many=True)


def output_files_payload(files: list[dict]) -> list[dict]:
    """A listing's files (outputs.Listing.files) as GET /api/jobs/{id}/files/ sends them."""
    return list(OutputFileSerializer(files, many=True).data)


# --- what the API answers besides shapes -------------------------------------------------


# The multipart request of POST /api/jobs/ (read by the view itself; this describes it).
class SubmitSerializer(serializers.Serializer):
    submission = serializers.FileField(help_text="the submission file")
    files = serializers.ListField(
        child=serializers.FileField(), required=False, help_text="one per file it names, matched by file name"
    )
    paths = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="optional, one per 'files' field in the same order: each file's path relative to the "
        "submission file's folder (data/a.txt), so that a `dir/` input finds the files of a folder; "
        "without it files are matched by their names",
    )
    dirs = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="optional, one per folder that holds no file (an empty `dir/` input), by its path relative to "
        "the submission file's folder: a folder no file is sent in is otherwise not known to the server",
    )


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="what is wrong and how to fix it (FILE:LINE: ... for a submission)")


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --- nodes -----------------------------------------------------------------------------


def node_views(now: datetime) -> tuple[list[tuple[Node, Capacity]], list[NodeView]]:
    nodes = list(Node.objects.all())
    used = capacity_in_use()
    rows, views = [], []
    for node in nodes:
        cap = used.get(node.id, Capacity())
        online = node.state == NodeState.ONLINE and not is_lost(
            node.last_heartbeat, now, settings.DCT_NODE_TIMEOUT_SECONDS
        )
        rows.append((node, cap))
        free = free_node(node, cap)
        views.append(
            NodeView(
                name=node.name,
                online=online,
                takes_jobs=online and not node.drained and node.accepts_jobs,
                total_cpus=free.total_cpus,
                total_memory_mb=free.total_memory_mb,
                total_gpus=free.total_gpus,
                free_cpus=free.free_cpus,
                free_memory_mb=free.free_memory_mb,
                free_gpus=len(free.free_gpus),
                drained=node.drained,
                owner_present=not free.lends,
                idle_minutes=node.idle_minutes,
                containers=free.containers,
                labels=free.labels,
                gpu_kinds=free.gpu_kinds,
                free_gpu_indices=tuple(free.free_gpus),
                ad=node_attrs(node),
                free_disk_mb=free.free_disk_mb,
            )
        )
    return rows, views


@dataclass(frozen=True)
class NodeRow:
    """A node with what the server works out about it now (state, what is free)."""

    node: Node
    state: str
    running_jobs: int
    free_cpus: int
    free_memory_mb: int
    free_gpus: int


def node_row(node: Node, cap: Capacity, now: datetime) -> NodeRow:
    online = node.state == NodeState.ONLINE and not is_lost(node.last_heartbeat, now, settings.DCT_NODE_TIMEOUT_SECONDS)
    free = free_node(node, cap)
    state = display_state(
        online=online,
        drained=node.drained,
        accepts_jobs=node.accepts_jobs,
        free_cpus=free.free_cpus,
        running_jobs=cap.jobs,
    )
    return NodeRow(
        node=node,
        state=state,
        running_jobs=cap.jobs,
        free_cpus=max(free.free_cpus, 0),
        free_memory_mb=max(free.free_memory_mb, 0),
        free_gpus=len(free.free_gpus),
    )


class GpuDevicesField(serializers.ListField):
    """A node's GPUs by kind, as the contract lists them: [{"index", "name", "memory_mb"}]."""

    def to_representation(self, data: list) -> list:
        return [{"index": g["index"], "name": g.get("name", ""), "memory_mb": g.get("memory_mb", 0)} for g in data]


class EnforcementField(serializers.DictField):
    """How a node limits its jobs (cgroups.enforcement); a row no worker has filled in shows the weakest."""

    def to_representation(self, value: dict) -> dict:
        value = value if isinstance(value, dict) else {}
        return {
            "cpus": value.get("cpus") or "affinity",
            "memory": value.get("memory") or "watch",
            "pids": value.get("pids") or None,
        }


# The node object of `nodes --json`, GET /api/nodes/ and the portal's nodes page (a NodeRow).
class NodeSerializer(ShapeSerializer):
    """The node shape, as `nodes --json` shows it."""

    name = serializers.CharField(source="node.name")
    state = serializers.CharField(help_text="available, busy, draining, drained, offline, ...")
    cpus = serializers.IntegerField(source="node.cpus")
    threads = serializers.IntegerField(source="node.threads")
    slots = serializers.IntegerField(source="node.slots")
    memory_total_mb = serializers.IntegerField(source="node.memory_total_mb")
    memory_available_mb = serializers.IntegerField(source="node.memory_available_mb")
    disk_free_mb = serializers.IntegerField(source="node.disk_free_mb")
    gpus = StoredListField(source="node.gpus", child=serializers.DictField())
    gpu_devices = GpuDevicesField(source="node.gpus", child=serializers.DictField())
    labels = StoredListField(source="node.labels", child=serializers.CharField())
    cuda = BlankAsNullField(source="node.cuda")
    load = serializers.FloatField(source="node.load")
    running_jobs = serializers.IntegerField()
    free_cpus = serializers.IntegerField()
    free_memory_mb = serializers.IntegerField()
    free_gpus = serializers.IntegerField()
    last_heartbeat = IsoTimeField(source="node.last_heartbeat", allow_null=True)
    sandbox = serializers.BooleanField(source="node.sandbox")
    enforcement = EnforcementField(
        source="node.enforcement",
        child=serializers.CharField(allow_null=True),
        help_text='how it limits jobs: {"cpus": affinity|cgroup, "memory": watch|cgroup, "pids": null|cgroup}',
    )
    accepts_jobs = serializers.BooleanField(source="node.accepts_jobs")
    containers = StoredListField(source="node.containers", child=serializers.CharField())
    hostname = serializers.CharField(source="node.hostname", allow_blank=True)
    policy = serializers.CharField(
        source="node.policy", allow_blank=True, help_text="'' (takes jobs whenever it has room) or desktop"
    )
    owner = BlankAsNullField(source="node.owner", help_text="a desktop's owner (DCT_NODE_OWNER)")
    owner_present = serializers.BooleanField(
        source="node.owner_present", help_text="a desktop whose owner is using it: it takes no new jobs"
    )
    idle_minutes = serializers.FloatField(source="node.idle_minutes", help_text="a desktop lends after this idle")


# `{"nodes": [...]}`.
class NodeListSerializer(serializers.Serializer):
    nodes = NodeSerializer(many=True)


def node_dict(node: Node, cap: Capacity, now: datetime) -> dict:
    return NodeSerializer().to_representation(node_row(node, cap, now))


def nodes_payload(now: datetime) -> list[dict]:
    rows, _ = node_views(now)
    return list(NodeSerializer([node_row(node, cap, now) for node, cap in rows], many=True).data)


def jobs_payload(jobs: Iterable[Job | JobRow], now: datetime, order: QueueOrder | None = None) -> list[dict]:
    """Jobs as dicts; waiting ones get their reason to wait.

    The cost grows with the jobs given, not with the queue: `order` (the
    queue's fair-share order, computed here when not given), two indexed
    counts per owner of a queued job, and one read each of the jobs'
    dependencies, attempts and what their waiting ones wait for.
    """
    # A JobRow (a bulk action's answer) has every attribute read here, as a Job has.
    jobs = cast("list[Job]", list(jobs))
    ids = [j.id for j in jobs]
    subs = {j.submission_id for j in jobs}  # a batch's jobs: their edges and attempts read per batch
    with collector_paused():  # a dict and a few lists per job, none of them garbage
        extra = {"parents": depends_on(ids, subs), "history": attempt_histories(ids, subs),
                 "waits": waiting_reasons(jobs, now), "dag_nodes": dag_node_names(jobs)}  # fmt: skip
        return _job_dicts(jobs, now, order, extra)


def dag_node_names(jobs: list[Job]) -> dict[int, str]:
    """DAG node id -> its name, for the jobs of DAGs among `jobs` (one query; none for jobs of no DAG)."""
    ids = sorted({j.dag_node_id for j in jobs if j.dag_node_id})
    names: dict[int, str] = {}
    for first in range(0, len(ids), 900):  # ids per IN (...): below SQLite's oldest limit (999)
        names.update(DagNode.objects.filter(id__in=ids[first : first + 900]).values_list("id", "name"))
    return names


def held_back_by(owners: set[int], waiting: list[Job], now: datetime) -> dict[int, str]:
    """job id -> the cap that holds each queued job of `waiting` back: its owner's running caps, else the total
    caps of the group it charges."""
    held = held_back_by_owner(owners, waiting, now)
    charging = [j for j in waiting if j.state == JobState.QUEUED and j.accounting_group_id and j.id not in held]
    totals = group_totals() if charging else {}
    for j in charging:
        if j.accounting_group_id in totals and (
            why := held_back_by_group(totals[j.accounting_group_id], j.request_gpus)
        ):
            held[j.id] = why
    return held


def held_back_by_owner(owners: set[int], waiting: list[Job], now: datetime) -> dict[int, str]:
    """job id -> the cap that holds each queued job of `waiting` back, for owners with a running cap."""
    found = {uid: s for uid, s in standings(owners, now).items() if s.caps.any_running}
    if not found:
        return {}
    names = dict(get_user_model().objects.filter(id__in=found).values_list("id", "username"))
    groups = {s.group_id for s in found.values() if s.group_id}
    group_names = dict(Group.objects.filter(id__in=groups).values_list("id", "name")) if groups else {}
    held = {}
    for j in waiting:
        s = found.get(j.owner_id)
        if s is not None and j.state == JobState.QUEUED:
            group = group_names.get(s.group_id or 0, "")
            why = held_back(s.caps, s.running_jobs, s.running_gpus, j.request_gpus, names.get(j.owner_id, "?"), group)
            if why:
                held[j.id] = why
    return held


def _job_dicts(jobs: list[Job], now: datetime, order: QueueOrder | None, extra: dict) -> list[dict]:
    waiting = [j for j in jobs if j.state in (JobState.QUEUED, JobState.HELD)]
    if not waiting:
        return list(JobSerializer(jobs, many=True, context={"now": now, **extra}).data)
    _, views = node_views(now)
    order = order or queue_order(now)
    rank = ahead_own(waiting)
    reasons = {}
    owners = {j.owner_id for j in waiting}
    capped = held_back_by(owners, waiting, now)
    idle = tuple(gputally.idle_holders()) if any(j.request_gpus for j in waiting) else ()
    for owner_id in owners:
        lower = order.ahead_of(owner_id)
        for j in (j for j in waiting if j.owner_id == owner_id):
            facts = WaitFacts(
                nodes=tuple(views),
                ahead_own=rank.get(j.id, 0),
                ahead_others=lower,
                cap=capped.get(j.id, ""),
                idle_gpus=idle,
            )
            request = Request(
                state=j.state,
                cpus=j.request_cpus,
                memory_mb=j.request_memory_mb,
                gpus=j.request_gpus,
                node=j.pinned_node,
                container=j.container,
                previous=j.reason if j.state == JobState.QUEUED else "",
                wants=wants_from(j.placement),
            )
            reasons[j.id] = explain_wait(request, facts)
    return list(JobSerializer(jobs, many=True, context={"now": now, "reasons": reasons, **extra}).data)
