"""What the database tests share: users, an online node, and a scheduler that is not there.

`no_scheduler` points Redis at a port nothing listens on, so waking the scheduler is a no-op and no test
depends on a pass it did not ask for; `no_sends` makes a pass count its Celery sends instead of sending.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dctoolkit.dev.stack import RedisServer
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job
from dctoolkit.jobs.scheduling import dispatch, wake
from dctoolkit.nodes.models import Node, NodeState


@pytest.fixture
def no_scheduler(settings, monkeypatch, tmp_path):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.DCT_STORAGE = tmp_path / "storage"
    monkeypatch.setattr(wake, "_redis", None)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real Redis of the module's own, on a free port (the metrics scrape, the scheduler's wake-ups)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def no_sends(monkeypatch):
    monkeypatch.setattr(dispatch, "send_runs", lambda sends: len(sends))


@pytest.fixture
def sent(monkeypatch):
    """The runs a pass hands to Celery, collected here instead of sent."""
    messages = []
    monkeypatch.setattr(dispatch, "send_runs", lambda sends: messages.extend(sends) or len(sends))
    return messages


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice")


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob")


@pytest.fixture
def folder(tmp_path):
    """A submission folder holding a.sh."""
    (tmp_path / "a.sh").write_text("#!/bin/sh\necho hi\n")
    return tmp_path


@pytest.fixture
def node(db):
    """node-1, online, with 4 cpus and 4 slots."""
    return online_node()


def online_node(name: str = "node-1", slots: int = 4, memory_mb: int = 4096) -> Node:
    """A node with a fresh heartbeat and a sandbox, `slots` cpus and as many slots."""
    return Node.objects.create(
        name=name, state=NodeState.ONLINE, slots=slots, cpus=slots, threads=slots, memory_total_mb=memory_mb,
        memory_available_mb=memory_mb, sandbox=True, last_heartbeat=timezone.now(),
    )  # fmt: skip


def sub(text: str, owner, folder) -> list[Job]:
    """Submit `executable = a.sh` plus `text` from `folder` as `owner`."""
    return submit(f"executable = a.sh\n{text}", "job.txt", owner, FolderFiles(folder))
