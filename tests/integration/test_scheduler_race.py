"""Scheduling passes at the same moment never dispatch a job twice nor overfill a node.

Several processes hammer dispatch.schedule_pass() on one database while another
keeps finishing jobs to free slots, an editor changes queued jobs' request_cpus
(1 or 2 <-> 3 on 3-cpu nodes: a pass that claimed with a plan made before the
edit would overfill the node) and a watcher samples every node's load (in the
second test, owners also cancel, hold and edit jobs and the housekeeping releases
jobs waiting on a dependency).  Runs on SQLite, and on PostgreSQL or MariaDB (where
row locks are real) when .ci/run sets DCT_TEST_DATABASE_URL.
"""

import subprocess
import sys
import textwrap

import pytest

from tests.support.cluster import ROOT, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.engine]

SETUP = textwrap.dedent(
    """
    import django, datetime
    django.setup()
    from django.contrib.auth.models import User
    from django.utils import timezone
    from dctoolkit.jobs.models import Job, Submission
    from dctoolkit.nodes.models import Node
    future = timezone.now() + datetime.timedelta(hours=1)  # fresh heartbeats for the whole test
    for i in range(5):
        Node.objects.create(name=f"n{i}", slots=3, memory_total_mb=100_000, last_heartbeat=future, accepts_jobs=True)
    now = timezone.now()
    for u in range(10):
        user = User.objects.create(username=f"u{u}")
        sub = Submission.objects.create(owner=user, source_name="x", text="")
        Job.objects.bulk_create(
            [Job(submission=sub, owner=user, name="j", executable="x.sh", submitted_at=now,
                 request_cpus=1 + (i % 2)) for i in range(40)]
        )
    """
)

HAMMER = textwrap.dedent(
    """
    import django, sys, time
    django.setup()
    from django.db import OperationalError
    from django.utils import timezone
    from dctoolkit.jobs.scheduling import dispatch
    from dctoolkit.jobs.models import Job, JobState
    from dctoolkit.jobs.intake.again import edit_jobs
    role, seconds = sys.argv[1], float(sys.argv[2])
    end = time.monotonic() + seconds
    edits = 0
    while go_on(end, sys.argv[3:]):
        try:
            if role == "editor":  # the next jobs a pass would place, made bigger or smaller
                edits += edit_heads(edit_jobs, Job, JobState)
            elif role == "finisher":
                for job_id in Job.objects.filter(state=JobState.DISPATCHED).values_list("id", flat=True)[:3]:
                    Job.objects.filter(id=job_id, state=JobState.DISPATCHED).update(state=JobState.SUCCEEDED)
                time.sleep(0.05)
            else:
                dispatch.schedule_pass(timezone.now())
        except OperationalError as exc:  # SQLite busy past its timeout: try again
            print("retry:", exc, file=sys.stderr)
    print(edits)
    """
)

# The owners' edit: the first queued jobs of a random owner get 3 cpus (or 1 if they had 3), each
# through `edit_jobs` as `./dct edit ID request_cpus=N` does; returns how many were changed.
EDIT_HEADS = textwrap.dedent(
    """
    import random

    def edit_heads(edit_jobs, Job, JobState):
        queued = Job.objects.filter(state=JobState.QUEUED).exclude(owner__username="pipeline")
        owners = list(queued.order_by().values_list("owner_id", flat=True).distinct())
        if not owners:
            return 0
        heads = list(queued.filter(owner_id=random.choice(owners)).order_by("-priority", "id")[:2])
        changed = 0
        for job in heads:
            cpus = "1" if job.request_cpus == 3 else "3"
            changed += len(edit_jobs([job], {"request_cpus": cpus}, actor="race-editor")[0])
        return changed
    """
)

# Whether a role goes on: until `end`; with "until-child", past it (up to 30 s more) until a pipeline child
# was dispatched (on a loaded machine, a parent's end and its child's release may take longer than `end`).
GO_ON = textwrap.dedent(
    """
    import time

    def go_on(end, flags, checked=[0.0]):
        now = time.monotonic()
        if now < end:
            return True
        if "until-child" not in flags or now > end + 30:
            return False
        if now - checked[0] < 0.5:
            return True
        checked[0] = now
        from dctoolkit.jobs.models import Job
        return not Job.objects.filter(owner__username="pipeline", name="child", dispatched_at__isnull=False).exists()
    """
)
HAMMER = EDIT_HEADS + GO_ON + HAMMER

# Samples every node's load (by the jobs' sizes as they are) while the others run; prints the worst seen.
WATCHER = textwrap.dedent(
    """
    import django, json, sys, time
    django.setup()
    from django.db import OperationalError
    from django.db.models import Sum
    from dctoolkit.jobs.models import HOLDS_SLOT, Job
    end = time.monotonic() + float(sys.argv[1])
    worst, samples = {}, 0
    while time.monotonic() < end:
        try:
            holding = Job.objects.filter(HOLDS_SLOT, node__isnull=False).values("node__name")
            for row in holding.annotate(c=Sum("request_cpus")):
                if row["c"] > 3:
                    worst[row["node__name"]] = max(worst.get(row["node__name"], 0), row["c"])
            samples += 1
        except OperationalError as exc:
            print("retry:", exc, file=sys.stderr)
        time.sleep(0.002)
    print(json.dumps({"overfilled": worst, "samples": samples}))
    """
)


def run_python(cluster: Cluster, code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**cluster.env, "DJANGO_SETTINGS_MODULE": "dctoolkit.settings"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


CHECK = textwrap.dedent(
    """
    import django, json
    django.setup()
    from django.db.models import Max, Sum
    from dctoolkit.jobs.models import Job, JobState
    active = Job.objects.filter(state=JobState.DISPATCHED)
    per_node = active.values("node__name").annotate(cpus=Sum("request_cpus"))
    print(json.dumps({
        "max_attempts": Job.objects.aggregate(m=Max("attempts"))["m"],
        "per_node": {r["node__name"]: r["cpus"] for r in per_node},
        "finished": Job.objects.filter(state=JobState.SUCCEEDED).count(),
        "queued": Job.objects.filter(state=JobState.QUEUED).count(),
    }))
    """
)


def test_concurrent_passes_never_double_dispatch_or_overfill(tmp_path):
    import json

    with Cluster(tmp_path / "c", scheduler=False) as c:
        setup = run_python(c, SETUP)
        assert setup.wait(120) == 0, setup.stderr.read()
        procs = [run_python(c, HAMMER, "scheduler", "6") for _ in range(4)]
        procs.append(run_python(c, HAMMER, "finisher", "4"))
        editor = run_python(c, HAMMER, "editor", "5")
        watcher = run_python(c, WATCHER, "6")
        for p in procs:
            assert p.wait(120) == 0, p.stderr.read()
        edits = int(communicate(editor).split()[-1])
        watched = json.loads(communicate(watcher))
        check = run_python(c, CHECK)
        out, err = check.communicate(timeout=60)
        assert check.returncode == 0, err
        facts = json.loads(out)
        assert facts["max_attempts"] == 1, f"a job was dispatched twice: {facts}"
        assert facts["finished"] > 0, "the finisher freed slots while the schedulers ran"
        assert all(cpus <= 3 for cpus in facts["per_node"].values()), f"a node was overfilled: {facts}"
        assert watched["overfilled"] == {}, f"a node was overfilled while the passes ran: {watched}"
        assert edits > 0 and watched["samples"] > 100, f"the editor and the watcher worked: {edits}, {watched}"
        assert sum(facts["per_node"].values()) >= 12, f"free slots were left unfilled: {facts}"


def communicate(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


# A node's side, played fast: start what is dispatched, end what runs, settle the kills.
NODE_AND_OWNERS = textwrap.dedent(
    """
    import django, json, random, sys, time
    django.setup()
    from django.db import OperationalError
    from django.db.models import Q
    from django.utils import timezone
    from dctoolkit.jobs import transitions
    from dctoolkit.jobs.models import KILLING, Job, JobState
    from dctoolkit.jobs.intake.again import edit_jobs
    from dctoolkit.jobs.scheduling import housekeeping
    role, seconds = sys.argv[1], float(sys.argv[2])
    end = time.monotonic() + seconds
    acted = {"cancel": [], "hold": [], "edits": 0}
    while go_on(end, sys.argv[3:]):
        try:
            now = timezone.now()
            if role == "node":
                dispatched = Job.objects.filter(state=JobState.DISPATCHED)
                for job_id, attempt, node in dispatched.values_list("id", "attempts", "node__name")[:6]:
                    transitions.start(job_id, attempt, node, now)
                ending = Job.objects.filter(Q(state=JobState.RUNNING) | Q(kill_requested__in=KILLING))
                for job_id, attempt in ending.values_list("id", "attempts")[:4]:
                    state = JobState.SUCCEEDED if job_id % 3 else JobState.FAILED  # some parents fail
                    transitions.finish(job_id, attempt, state, now, exit_code=0 if job_id % 3 else 1, run_seconds=0.01)
                time.sleep(0.02)
            elif role == "resolver":  # the scheduler's housekeeping, racing the passes
                housekeeping.resolve_dependencies(now)
                time.sleep(0.01)
            elif role == "editor":  # an owner changing the size of the next jobs a pass would place
                acted["edits"] += edit_heads(edit_jobs, Job, JobState)
                time.sleep(0.05)  # each edit takes the scheduler lock: leave the passes room to dispatch
            else:  # the owners: cancel and hold jobs in every state a pass or a node may be changing
                live = Job.objects.filter(state__in=(JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING))
                live = live.exclude(owner__username="pipeline")  # its jobs are the dependency check's
                owner = random.choice(list(live.values_list("owner_id", flat=True)[:50]) or [0])
                ids = list(live.filter(owner_id=owner).order_by("?").values_list("id", flat=True)[:3])
                for verb, act, chosen in (("cancel", transitions.cancel_jobs, ids[:2]),
                                          ("hold", transitions.hold_jobs, ids[2:])):
                    if act(Job.objects.filter(id__in=chosen), now):
                        # What each changed job had done by then: nothing may be added after.
                        changed = Job.objects.filter(id__in=chosen, acted_at=now)
                        rows = changed.values_list("id", "attempts", "started_at")
                        acted[verb] += [[i, n, str(s)] for i, n, s in rows]
                time.sleep(0.03)
        except OperationalError as exc:  # SQLite busy past its timeout: try again
            print("retry:", exc, file=sys.stderr)
    print(json.dumps(acted))
    """
)
NODE_AND_OWNERS = EDIT_HEADS + GO_ON + NODE_AND_OWNERS

# A pipeline user: 12 parents queued beside the others' jobs, each with a child waiting on it (after_ok).
SETUP_PIPELINE = textwrap.dedent(
    """
    import django
    django.setup()
    from django.contrib.auth.models import User
    from django.utils import timezone
    from dctoolkit.jobs.models import Dependency, Job, JobState, Submission
    now = timezone.now()
    user = User.objects.create(username="pipeline")
    sub = Submission.objects.create(owner=user, source_name="x", text="")
    parents = [Job.objects.create(submission=sub, owner=user, name="parent", executable="x.sh", submitted_at=now)
               for _ in range(12)]
    for parent in parents:
        child = Job.objects.create(submission=sub, owner=user, name="child", executable="x.sh", submitted_at=now,
                                   state=JobState.WAITING)
        Dependency.objects.create(child=child, parent=parent, kind="after_ok")
    """
)

CHECK_PIPELINE = textwrap.dedent(
    """
    import django, json
    django.setup()
    from dctoolkit.jobs.models import Dependency
    early, foreclosed_ran, ran, cancelled = [], [], 0, 0
    for edge in Dependency.objects.select_related("child", "parent"):
        child, parent = edge.child, edge.parent
        if child.dispatched_at is not None:
            ran += 1
            if parent.state != "succeeded":
                foreclosed_ran.append(child.id)
            elif parent.finished_at is None or child.dispatched_at < parent.finished_at:
                early.append(child.id)
        cancelled += child.state == "cancelled"
    print(json.dumps({"early": early, "foreclosed_ran": foreclosed_ran, "ran": ran, "cancelled": cancelled}))
    """
)

CHECK_ACTIONS = textwrap.dedent(
    """
    import django, json, sys
    django.setup()
    from django.db.models import Sum
    from dctoolkit.jobs.models import HOLDS_SLOT, Job, JobState
    acted = json.loads(sys.argv[1])
    then = {i: (n, s) for i, n, s in acted["cancel"] + acted["hold"]}
    cancel_ids = [i for i, _, _ in acted["cancel"]]
    cancelled = Job.objects.filter(id__in=cancel_ids)
    held = Job.objects.filter(id__in=[i for i, _, _ in acted["hold"]]).exclude(id__in=cancel_ids)
    per_node = Job.objects.filter(HOLDS_SLOT, node__isnull=False).values("node__name").annotate(c=Sum("request_cpus"))
    now = Job.objects.filter(id__in=list(then)).values_list("id", "attempts", "started_at")
    print(json.dumps({
        "cancelled_states": sorted(set(cancelled.values_list("state", flat=True))),
        "held_states": sorted(set(held.values_list("state", flat=True))),
        "dispatched_or_started_after_action": [i for i, n, s in now if (n, str(s)) != tuple(then[i])],
        "max_attempts": max(Job.objects.values_list("attempts", flat=True)),
        "per_node": {r["node__name"]: r["c"] for r in per_node},
        "succeeded": Job.objects.filter(state=JobState.SUCCEEDED).count(),
    }))
    """
)


def test_cancel_hold_and_dependencies_racing_passes_never_run_a_job_too_early_or_after_it_was_stopped(tmp_path):
    """Four processes hammer passes while a node starts and ends jobs, owners cancel, hold and edit, and
    the dependency housekeeping releases waiting children: nothing runs after its cancel or hold, no child
    before its parent succeeded, no cancel or hold is overwritten, no node is overfilled (by the jobs'
    sizes after their edits)."""
    import json

    with Cluster(tmp_path / "c", scheduler=False) as c:
        for script in (SETUP, SETUP_PIPELINE):
            setup = run_python(c, script)
            assert setup.wait(120) == 0, setup.stderr.read()
        procs = [run_python(c, HAMMER, "scheduler", "8", "until-child") for _ in range(4)]
        node = run_python(c, NODE_AND_OWNERS, "node", "8", "until-child")
        resolver = run_python(c, NODE_AND_OWNERS, "resolver", "8", "until-child")
        owners = run_python(c, NODE_AND_OWNERS, "owners", "6")
        editor = run_python(c, NODE_AND_OWNERS, "editor", "6")
        watcher = run_python(c, WATCHER, "8")
        for p in [*procs, node, resolver]:
            assert p.wait(120) == 0, p.stderr.read()
        edits = json.loads(communicate(editor))["edits"]
        watched = json.loads(communicate(watcher))
        out, err = owners.communicate(timeout=120)
        assert owners.returncode == 0, err
        acted = json.loads(out)
        assert acted["cancel"] and acted["hold"], "the owners acted while the passes ran"
        check = run_python(c, CHECK_ACTIONS, json.dumps(acted))
        out, err = check.communicate(timeout=60)
        assert check.returncode == 0, err
        facts = json.loads(out)
        assert facts["cancelled_states"] == ["cancelled"], f"a cancel was overwritten: {facts}"
        assert facts["held_states"] == ["held"], f"a hold was overwritten: {facts}"
        assert facts["dispatched_or_started_after_action"] == [], (
            f"a job was dispatched or started after it was cancelled or held: {facts}"
        )
        assert facts["max_attempts"] == 1, f"a job was dispatched twice: {facts}"
        assert facts["succeeded"] > 0, "the node ended jobs while the owners acted"
        assert all(cpus <= 3 for cpus in facts["per_node"].values()), f"a node was overfilled: {facts}"
        assert watched["overfilled"] == {}, f"a node was overfilled while the passes ran: {watched}"
        assert edits > 0, "the editor changed queued jobs while the passes ran"

        check = run_python(c, CHECK_PIPELINE)
        out, err = check.communicate(timeout=60)
        assert check.returncode == 0, err
        pipeline = json.loads(out)
        assert pipeline["early"] == [], f"a child was dispatched before its parent succeeded: {pipeline}"
        assert pipeline["foreclosed_ran"] == [], f"a child of a parent that did not succeed ran: {pipeline}"
        assert pipeline["ran"] > 0 and pipeline["cancelled"] > 0, f"both ways were taken: {pipeline}"
