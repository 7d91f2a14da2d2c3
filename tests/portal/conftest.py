"""Fixtures of the portal's test-client tests: the three standard users, jobs with files, nodes."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.nodes.models import Node

_names = itertools.count(1)


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.DCT_STORAGE = tmp_path / "storage"
    # Nothing listens here: the portal's scheduler wake-ups fail quietly, as without Redis.
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    return settings.DCT_STORAGE


@pytest.fixture
def owner(db):
    return User.objects.create_user("alice", password="alice-pass-123")


@pytest.fixture
def other(db):
    return User.objects.create_user("bob", password="bob-pass-123")


@pytest.fixture
def staff(db):
    return User.objects.create_user("root", password="root-pass-123", is_staff=True)


@pytest.fixture
def node(db):
    return Node.objects.create(
        name="node-1",
        hostname="box1",
        slots=4,
        cpus=4,
        threads=8,
        memory_total_mb=8192,
        memory_available_mb=6000,
        load=0.42,
        gpus=[{"index": 0, "name": "Tesla T4", "memory_mb": 15360, "uuid": "GPU-1"}],
        cuda="12.4",
        sandbox=True,
        last_heartbeat=timezone.now(),
    )


def make_job(user, state=JobState.SUCCEEDED, stdout="", outputs=None, inputs=None, **fields) -> Job:
    """A job row with its files in storage, as a node would have left them."""
    now = timezone.now()
    sub = Submission.objects.create(owner=user, source_name="job.txt", text="executable = fit.py\n")
    sub.folder().mkdir(parents=True, exist_ok=True)
    (sub.folder() / "fit.py").write_text("print('hi')\n")
    for name, content in (inputs or {}).items():
        (sub.folder() / name).write_text(content)
    finished = state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    defaults = {
        "name": f"fit{next(_names)}",
        "executable": "fit.py",
        "inputs": list(inputs or {}),
        "state": state,
        "submitted_at": now - timedelta(minutes=5),
        "started_at": now - timedelta(minutes=4) if state != JobState.QUEUED else None,
        "finished_at": now if finished else None,
        "run_seconds": 60.0 if finished else None,
        "exit_code": 0 if state == JobState.SUCCEEDED else None,
        "attempts": 1,
    }
    job = Job.objects.create(submission=sub, owner=user, **{**defaults, **fields})
    job.folder().mkdir(parents=True, exist_ok=True)
    (job.folder() / "stdout").write_text(stdout)
    (job.folder() / "stderr").write_text("")
    for path, content in (outputs or {}).items():
        target = job.folder() / "outputs" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return job


@pytest.fixture
def job(owner):
    return make_job(
        owner, stdout="hello from the job\n", outputs={"result.csv": "a,b\n1,2\n"}, inputs={"data.csv": "x"}
    )
