"""Caps per user through the real code on the test database: `./dct limits`, a submission over the queued
cap refused (nothing queued), a pass that starts no more of a capped user's jobs, and the reason naming the
cap.  Sending is replaced by a list (Redis is the integration tests' business)."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.accounts.models import Account
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling import dispatch
from dctoolkit.jobs.web.serializers import jobs_payload
from dctoolkit.nodes.models import Node, NodeState
from dctoolkit.operations.models import AuditEvent


@pytest.fixture
def alice(db, settings, tmp_path):
    settings.DCT_STORAGE = tmp_path / "storage"
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    return get_user_model().objects.create_user("alice")


def submit_text(owner, tmp_path, text):
    return submit(f"executable = run.sh\n{text}", "job.sub", owner, FolderFiles(tmp_path))


def run_cli(*args):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_limits_shows_the_settings_and_sets_a_users_own_caps(alice, settings):
    settings.DCT_MAX_RUNNING_JOBS = 10
    assert run_cli("limits", "alice") == (
        "max_running_jobs: 10 (DCT_MAX_RUNNING_JOBS)\n"
        "max_running_gpus: no cap (DCT_MAX_RUNNING_GPUS)\n"
        "max_queued_jobs: no cap (DCT_MAX_QUEUED_JOBS)\n"
    )
    run_cli("limits", "alice", "--max-running-jobs", "2", "--max-queued-jobs", "0")
    assert json.loads(run_cli("limits", "alice", "--json")) == {
        "user": "alice",
        "max_running_jobs": 2,
        "max_running_gpus": None,
        "max_queued_jobs": None,
        "own": {"max_running_jobs": 2, "max_running_gpus": None, "max_queued_jobs": 0},
    }
    run_cli("limits", "alice", "--default")
    assert Account.objects.get(user=alice).max_running_jobs is None
    run_cli("limits", "alice", "--default")  # nothing changed: nothing recorded
    recorded = list(AuditEvent.objects.order_by("id").values_list("action", "target", "details"))
    unset = {"max_running_jobs": None, "max_running_gpus": None, "max_queued_jobs": None}
    capped = {"max_running_jobs": 2, "max_running_gpus": None, "max_queued_jobs": 0}
    assert recorded == [
        ("limits", "alice", {"before": unset, "after": capped}),
        ("limits", "alice", {"before": capped, "after": unset}),
    ]
    with pytest.raises(CommandError, match="no user 'nobody'"):
        run_cli("limits", "nobody")
    with pytest.raises(CommandError, match="'many' is not a count"):
        run_cli("limits", "alice", "--max-running-gpus", "many")


def test_a_submission_over_the_queued_cap_is_refused_at_its_queue_line_and_nothing_is_queued(alice, tmp_path):
    Account.objects.create(user=alice, max_queued_jobs=5)
    submit_text(alice, tmp_path, "queue 3\n")
    with pytest.raises(SubmissionError) as info:
        submit_text(alice, tmp_path, "hold = true\nqueue 3\n")
    assert str(info.value) == (
        "job.sub:3: alice may have 5 jobs waiting, queued or held and has 3; this submission adds 3, so at most "
        "2 more fit (DCT_MAX_QUEUED_JOBS or ./dct limits alice); nothing was queued"
    )
    assert Job.objects.count() == 3
    Job.objects.update(state=JobState.SUCCEEDED)  # ended jobs do not count
    assert len(submit_text(alice, tmp_path, "queue 5\n")) == 5


def test_a_pass_starts_no_more_of_a_capped_users_jobs_and_their_reason_names_the_cap(alice, tmp_path, sent, settings):
    settings.DCT_MAX_RUNNING_JOBS = 2
    Node.objects.create(name="node-1", state=NodeState.ONLINE, slots=8, cpus=8, threads=8, memory_total_mb=8192,
                        memory_available_mb=8192, sandbox=True, last_heartbeat=timezone.now())  # fmt: skip
    jobs = submit_text(alice, tmp_path, "queue 4\n")
    assert dispatch.schedule_pass(timezone.now()) == 2
    assert dispatch.schedule_pass(timezone.now()) == 0, "two run: the cap is reached"
    waiting = Job.objects.filter(state=JobState.QUEUED).order_by("id")
    assert [j.id for j in waiting] == [j.id for j in jobs[2:]]
    (shown, _) = jobs_payload(list(waiting), timezone.now())
    assert shown["reason"] == (
        "held back by a cap: alice may run 2 jobs at once and runs 2 (DCT_MAX_RUNNING_JOBS or ./dct limits alice)"
    )
    Account.objects.update_or_create(user=alice, defaults={"max_running_jobs": 3})
    assert dispatch.schedule_pass(timezone.now()) == 1, "her own cap of 3 replaces the setting"
