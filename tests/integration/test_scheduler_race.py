"""Scheduling passes at the same moment never dispatch a job twice nor overfill a node.

Several processes hammer dispatch.schedule_pass() on one database while another
keeps finishing jobs to free slots.  Runs on SQLite, and on PostgreSQL (where
row locks are real) when .ci/run sets DCT_TEST_DATABASE_URL.
"""

import subprocess
import sys
import textwrap

import pytest

from tests.support.cluster import ROOT, Cluster

pytestmark = pytest.mark.integration

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
    from dctoolkit.jobs import dispatch
    from dctoolkit.jobs.models import Job, JobState
    role, seconds = sys.argv[1], float(sys.argv[2])
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if role == "finisher":
                for job_id in Job.objects.filter(state=JobState.DISPATCHED).values_list("id", flat=True)[:3]:
                    Job.objects.filter(id=job_id, state=JobState.DISPATCHED).update(state=JobState.SUCCEEDED)
                time.sleep(0.05)
            else:
                dispatch.schedule_pass(timezone.now())
        except OperationalError as exc:  # SQLite busy past its timeout: try again
            print("retry:", exc, file=sys.stderr)
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
        for p in procs:
            assert p.wait(120) == 0, p.stderr.read()
        check = run_python(c, CHECK)
        out, err = check.communicate(timeout=60)
        assert check.returncode == 0, err
        facts = json.loads(out)
        assert facts["max_attempts"] == 1, f"a job was dispatched twice: {facts}"
        assert facts["finished"] > 0, "the finisher freed slots while the schedulers ran"
        assert all(cpus <= 3 for cpus in facts["per_node"].values()), f"a node was overfilled: {facts}"
        assert sum(facts["per_node"].values()) >= 12, f"free slots were left unfilled: {facts}"
