"""Jobs and their submissions; the life-cycle states.

State changes live in `transitions.py`, each one a conditional UPDATE.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models


class JobState(models.TextChoices):
    WAITING = "waiting"  # a dependency not yet met: never read by a scheduling pass
    QUEUED = "queued"
    HELD = "held"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUSPENDED = "suspended"  # on a desktop node whose owner came back: stopped, holding its slot, not charged
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = (JobState.DISPATCHED, JobState.RUNNING, JobState.SUSPENDED)
# Started on its node and not ended: its process exists (running, or stopped while a desktop's owner is back).
STARTED_STATES = (JobState.RUNNING, JobState.SUSPENDED)
# Not yet dispatched (nothing has run for the current attempt).
WAITING_STATES = (JobState.WAITING, JobState.QUEUED, JobState.HELD)
FINAL_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class KillRequest(models.TextChoices):
    NONE = ""
    CANCEL = "cancel"
    HOLD = "hold"


# A job whose owner cancelled or held it while it ran shows its new state at
# once, but its process is still being killed: until its node reports the
# kill done (kill_requested back to ""), it keeps its node and its slot.
KILLING = (KillRequest.CANCEL, KillRequest.HOLD)
# The jobs that take a node's capacity.
HOLDS_SLOT = models.Q(state__in=ACTIVE_STATES) | models.Q(kill_requested__in=KILLING)


# A job, batch or DAG that may still owe its owner a mail: not sent yet, and an address to send it to.
OWES_MAIL = models.Q(notified=False) & ~models.Q(email="")


class Submission(models.Model):
    """One submitted file: its staged input files are shared by its `queue = N` jobs."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions")
    source_name = models.CharField(max_length=255)
    text = models.TextField()
    email = models.CharField(max_length=254, blank=True)
    notification = models.CharField(
        max_length=8, blank=True, help_text="HTCondor's notification: error (mail only if a job failed), or always."
    )
    job_count = models.PositiveIntegerField(default=1)
    files = models.JSONField(
        default=dict,
        blank=True,
        help_text="Each named file's source as written -> its name in the folder ('dir/': '').",
    )
    notified = models.BooleanField(default=False, help_text="The batch digest has been sent.")
    created_at = models.DateTimeField(auto_now_add=True)

    def folder(self) -> Path:
        return Path(settings.DCT_STORAGE) / "submissions" / str(self.pk)


class JobQuerySet(models.QuerySet["Job"]):
    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> JobQuerySet:
        """The jobs `user` may see and touch: their own; staff, every job; no one signed in, none.

        The one copy of this rule for querysets (API, portal, command line);
        `dctoolkit.jobs.visibility.may_see` is the same rule for a plain row
        (tests/db/test_visibility.py holds them equal).  Another's job is not
        there at all, so asking for it is "not found", never "forbidden".
        """
        if not user.is_authenticated:
            return self.none()
        # mypy: the project's user model is auth.User.
        return self if getattr(user, "is_staff", False) else self.filter(owner=user)  # type: ignore[misc]


class Job(models.Model):
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="jobs")
    # No index of its own: job_owner_newest (owner, -id) serves every lookup by owner (migration 0021).
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    name = models.CharField(max_length=200)
    process = models.PositiveIntegerField(default=0, help_text="$(Process): 0..N-1 within its submission.")
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    reason = models.TextField(blank=True, help_text="Why it ended as it did (failed, cancelled).")
    kill_requested = models.CharField(
        max_length=8,
        choices=KillRequest.choices,
        default="",
        blank=True,
        help_text="Set while the job's process is being killed (cancelled or held while running).",
    )
    acted_at = models.DateTimeField(
        null=True, blank=True, help_text="When its owner last cancelled, held or released it."
    )

    executable = models.CharField(max_length=255)
    arguments = models.JSONField(default=list, blank=True)
    inputs = models.JSONField(default=list, blank=True, help_text="Staged file names, in the submission folder.")
    environment = models.JSONField(default=dict, blank=True)
    output = models.JSONField(default=list, blank=True, help_text="Paths to bring back; empty: every new file.")
    output_remaps = models.JSONField(
        default=dict, blank=True, help_text="transfer_output_remaps: an output's path -> the path it comes back as."
    )
    streams = models.JSONField(
        default=dict, blank=True, help_text="HTCondor's input/output/error/log/initialdir names (jobs/streams.py)."
    )
    attributes = models.JSONField(default=dict, blank=True, help_text="HTCondor's +Attr / MY.Attr, as written.")
    email = models.CharField(max_length=254, blank=True)
    pinned_node = models.CharField(max_length=100, blank=True)
    request_cpus = models.PositiveIntegerField(default=1)
    request_memory_mb = models.PositiveIntegerField(default=256)
    request_gpus = models.PositiveIntegerField(default=0)
    max_runtime_seconds = models.FloatField(null=True, blank=True)
    network = models.CharField(max_length=8, blank=True)
    container = models.CharField(max_length=255, blank=True)
    priority = models.IntegerField(
        default=0, help_text="priority = N: higher first among its owner's own queued jobs (Slurm --nice: lower)."
    )
    accounting_group = models.ForeignKey(
        "accounts.Group",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,  # job_accounting_group, partial
        help_text="The group it charges: accounting_group = NAME, else its owner's first group (none: no group).",
    )
    placement = models.JSONField(
        default=dict,
        blank=True,
        help_text="Machine choice beyond sizes: {labels, nodes, avoid, gpu_type, gpu_memory_mb, gpu_capability}.",
    )

    # Retries (max_retries, success_exit_code, retry_until, retry_delay); `retries`: those used so far.
    max_retries = models.PositiveSmallIntegerField(default=0)
    success_exit_code = models.IntegerField(default=0)
    retry_until = models.IntegerField(null=True, blank=True, help_text="An exit code that ends the retries.")
    retry_delay_seconds = models.FloatField(null=True, blank=True)
    retries = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True, help_text="A waiting retry is queued then.")
    # HTCondor's job policy expressions (jobs/jobpolicy.py), as written; `periodic_policy`: it has a periodic
    # one, so the housekeeping reads it (and no other job).  A held job's HoldReasonCode, SubCode and since when.
    policy = models.JSONField(default=dict, blank=True, help_text="on_exit_hold, periodic_release, ...: key -> text.")
    periodic_policy = models.BooleanField(default=False)
    hold_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTCondor's HoldReasonCode.")
    hold_subcode = models.IntegerField(null=True, blank=True, help_text="HTCondor's HoldReasonSubCode.")
    held_at = models.DateTimeField(null=True, blank=True, help_text="When it was last held.")
    num_holds = models.PositiveIntegerField(default=0, help_text="HTCondor's NumHolds: the times it was held.")
    # Start times and throttles (start_after, max_running): the housekeeping queues a waiting job when both hold.
    start_after = models.DateTimeField(null=True, blank=True, help_text="The job waits until then.")
    max_running = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many jobs of its submission dispatched or running."
    )

    node = models.ForeignKey("nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    gpu_indices = models.JSONField(default=list, blank=True)
    cpu_indices = models.JSONField(
        default=list, blank=True, help_text="The node's CPU cores this attempt is pinned to (set as it starts)."
    )
    # GPU utilisation in this attempt, folded in from the node's heartbeats (jobs/gputally.py, gpuuse.py).
    gpu_util_total = models.FloatField(default=0.0, help_text="Sum of its GPU utilisation samples (percent).")
    gpu_util_samples = models.PositiveIntegerField(default=0)
    gpu_util_recent = models.FloatField(null=True, blank=True, help_text="Mean over the last 10 minutes.")
    gpu_idle_since = models.DateTimeField(
        null=True, blank=True, help_text="Every sample since then is under DCT_GPU_IDLE_PERCENT."
    )
    gpu_util_at = models.DateTimeField(null=True, blank=True, help_text="The last GPU utilisation sample.")
    attempts = models.PositiveIntegerField(default=0, help_text="Dispatches so far.")
    exit_code = models.IntegerField(null=True, blank=True)
    submitted_at = models.DateTimeField()
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    run_seconds = models.FloatField(null=True, blank=True)
    # A desktop node's owner came back: the job is stopped, not charged, and max_runtime does not count it.
    suspended_seconds = models.FloatField(default=0.0, help_text="Time spent suspended in this attempt, ended spells.")
    suspended_at = models.DateTimeField(null=True, blank=True, help_text="When the current suspension began.")
    cpu_seconds = models.FloatField(null=True, blank=True)
    max_rss_mb = models.FloatField(null=True, blank=True)
    sandboxed = models.BooleanField(null=True, blank=True)
    notified = models.BooleanField(default=False)
    # A DAG's node runs as jobs (its PRE and POST scripts too): `dag_node` says which node.
    # Indexed by job_dag and job_dag_node, partial (most jobs belong to no DAG).
    dag = models.ForeignKey("Dag", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    dag_node = models.ForeignKey(
        "DagNode", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs", db_index=False
    )

    objects = JobQuerySet.as_manager()
    # Not a column: the owner's granted folders (accounts.grants.GrantedFolder) as the node's start read them
    # in its own statement (PostgreSQL: `transitions.start_and_read`); None where they were not read with it.
    granted_at_start: tuple | None = None

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Each user's queued jobs in the order they are served: priority first (queues.read_heads); also
            # who has queued jobs, and a user's jobs per state (history.state_counts).  The one (state, owner)
            # index: a scheduling pass rewrites each placed job's entry in every index on `state`, at a random
            # place per user, so a second one (state, owner, id) cost a third of the claim's page writes at a
            # million queued (bench/README.md, "Scale").
            models.Index(fields=["state", "owner", "-priority", "id"], name="job_state_owner_priority"),
            # Capacity in use per node, and the node-lost sweep.
            models.Index(fields=["state", "node"], name="job_state_node"),
            # History pages: one user's jobs, newest first.
            models.Index(fields=["owner", "-id"], name="job_owner_newest"),
            # The indexes below are partial on SQLite and PostgreSQL: a job that has no retry time, start
            # time, periodic policy, DAG or accounting group (most jobs) is in none of them, so its claim,
            # start and end write none of their entries (PostgreSQL writes an entry in every index that holds
            # a row for each version of it: an update of `state` is never HOT).  MySQL and MariaDB have no
            # partial indexes: there migration 0021 keeps their full forms.
            # The housekeeping: waiting retries whose delay is over.
            models.Index(fields=["state", "retry_at"], name="job_retry_at", condition=models.Q(retry_at__isnull=False)),
            # The housekeeping: waiting jobs whose start time is due.
            models.Index(
                fields=["state", "start_after"], name="job_start_after", condition=models.Q(start_after__isnull=False)
            ),
            # Throttled jobs only (partial: the rest, a whole queue, are not in it, so a pass's claim leaves it
            # alone).  MySQL and MariaDB have no partial index: there migration 0018 keeps the full
            # (max_running, state, submission) index instead.
            models.Index(
                fields=["submission", "state"],
                name="job_throttled_submission",
                condition=models.Q(max_running__isnull=False),
            ),
            # The housekeeping: jobs with a periodic policy expression (periodic_release, ...).
            models.Index(fields=["state"], name="job_has_periodic_policy", condition=models.Q(periodic_policy=True)),
            models.Index(fields=["dag"], name="job_dag", condition=models.Q(dag__isnull=False)),
            models.Index(fields=["dag_node"], name="job_dag_node", condition=models.Q(dag_node__isnull=False)),
            models.Index(
                fields=["accounting_group"],
                name="job_accounting_group",
                condition=models.Q(accounting_group__isnull=False),
            ),
            # Capacity in use: the jobs whose kill is still under way keep their slot.
            models.Index(fields=["kill_requested", "node"], name="job_killing_node"),
            # The mail step: jobs that may owe a mail (partial: a job without an address is never in it, so a
            # round costs one probe beside any number of ended jobs).  MySQL and MariaDB: (notified, email).
            models.Index(fields=["state"], name="job_owes_mail", condition=OWES_MAIL),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.name}, {self.state})"

    def folder(self) -> Path:
        """The job's folder in shared storage: stdout, stderr, outputs/."""
        return Path(settings.DCT_STORAGE) / "jobs" / str(self.pk)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class Attempt(models.Model):
    """One run of a job, kept when it ends (the job's attempt history)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_history")
    attempt = models.PositiveIntegerField()
    node = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=16, help_text="How this run ended (its job may have run again).")
    exit_code = models.IntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField()

    class Meta:
        ordering = ["job", "attempt", "id"]
        indexes = [models.Index(fields=["job", "attempt"], name="attempt_job")]


class DependencyKind(models.TextChoices):
    AFTER_OK = "after_ok"  # the parent succeeded
    AFTER_ANY = "after_any"  # the parent ended, however
    AFTER_FAIL = "after_fail"  # the parent failed or was cancelled


class Dependency(models.Model):
    """`child` may start only once `parent` ended as `kind` asks.

    `resolved` is set when the parent's end has been applied to the child
    (the condition held, or the child was cancelled because it never can);
    a waiting child with no unresolved edge left is queued.
    """

    child = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dependencies")
    parent = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dependents")
    kind = models.CharField(max_length=10, choices=DependencyKind.choices)
    resolved = models.BooleanField(default=False)

    class Meta:
        indexes = [
            # The scheduler's housekeeping: unresolved edges whose parent has ended.
            models.Index(fields=["resolved", "parent"], name="dependency_open_parent"),
            models.Index(fields=["child", "resolved"], name="dependency_child_open"),
        ]


class SchedulerLock(models.Model):
    """One row; a scheduling pass holds it FOR UPDATE so that passes never overlap.

    (SQLite has no row locks, but its IMMEDIATE transactions serialise the
    same passes.)
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    # Bumped by every edit of a waiting, queued or held job, in the edit's transaction (scheduling/lock.py):
    # a pass whose plan was made before an edit plans again.
    edits = models.PositiveBigIntegerField(default=0)


class DagState(models.TextChoices):
    RUNNING = "running"  # its nodes are being run (the engine in scheduling/dagman.py drives it)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a node failed (or the FINAL node did), or ABORT-DAG-ON stopped it
    CANCELLED = "cancelled"


class Dag(models.Model):
    """One submitted DAG file (HTCondor DAGMan's language): its nodes run as jobs, parents first.

    The files its nodes need were copied into `folder()` at submission, so that the scheduler never
    reads a user's folder; `files` maps each path as the DAG's folder names it to its stored copy.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dags")
    source_name = models.CharField(max_length=255)
    text = models.TextField()
    state = models.CharField(max_length=16, choices=DagState.choices, default=DagState.RUNNING)
    max_jobs = models.JSONField(default=dict, blank=True, help_text="MAXJOBS: category -> most nodes at once.")
    files = models.JSONField(default=dict, blank=True, help_text="path in the DAG's folder -> stored copy.")
    email = models.CharField(max_length=254, blank=True)
    notified = models.BooleanField(default=False, help_text="The DAG's one mail has been sent.")
    aborted = models.TextField(blank=True, help_text="Why ABORT-DAG-ON stopped it.")
    exit_code = models.IntegerField(null=True, blank=True, help_text="The DAG's return value once ended.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The mail step: DAGs that may owe a mail (partial, as the jobs' job_owes_mail).
        indexes = [models.Index(fields=["state"], name="dag_owes_mail", condition=OWES_MAIL)]

    def __str__(self) -> str:
        return f"dag {self.pk} ({self.source_name}, {self.state})"

    def folder(self) -> Path:
        return Path(settings.DCT_STORAGE) / "dags" / str(self.pk)


class NodePhase(models.TextChoices):
    NONE = ""  # not started, or ended
    PRE = "pre"
    JOB = "job"
    POST = "post"


class DagNode(models.Model):
    """One JOB (or FINAL) of a DAG.  `state` is `waiting` until it is submitted, then as its jobs go;
    `phase` says which of its PRE script, job and POST script runs (their jobs have ids >= `phase_from`)."""

    dag = models.ForeignKey(Dag, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=200)
    line = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.WAITING)
    phase = models.CharField(max_length=8, choices=NodePhase.choices, default="", blank=True)
    phase_from = models.PositiveBigIntegerField(default=0, help_text="The first job id of the running phase.")
    parents = models.JSONField(default=list, blank=True, help_text="Names of its parent nodes.")
    submit_name = models.CharField(max_length=255, help_text="Its submit file, relative to the DAG's folder.")
    submit_text = models.TextField(blank=True)
    directory = models.CharField(max_length=255, blank=True, help_text="DIR: where its files are.")
    variables = models.JSONField(default=list, blank=True, help_text="VARS: [[name, value], ...].")
    max_retries = models.PositiveIntegerField(default=0, help_text="RETRY N.")
    unless_exit = models.IntegerField(null=True, blank=True)
    retries = models.PositiveIntegerField(default=0, help_text="Retries used: $(RETRY).")
    priority = models.IntegerField(default=0)
    category = models.CharField(max_length=100, blank=True)
    is_final = models.BooleanField(default=False)
    noop = models.BooleanField(default=False)
    pre = models.JSONField(null=True, blank=True, help_text="PRE script: {executable, arguments, defer...}.")
    post = models.JSONField(null=True, blank=True)
    pre_skip = models.IntegerField(null=True, blank=True)
    abort_on = models.IntegerField(null=True, blank=True)
    abort_return = models.IntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True, help_text="The node's exit value (POST's if any).")
    pre_return = models.IntegerField(null=True, blank=True)
    job_return = models.IntegerField(null=True, blank=True, help_text="$RETURN: its job's exit value.")
    job_ids = models.CharField(max_length=64, blank=True, help_text="$JOBID: its job as Cluster.Proc.")
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["dag", "id"]
        constraints = [models.UniqueConstraint(fields=["dag", "name"], name="dag_node_unique_name")]
        indexes = [models.Index(fields=["state", "phase"], name="dag_node_state_phase")]

    def __str__(self) -> str:
        return f"node {self.name} of dag {self.dag_id} ({self.state})"
