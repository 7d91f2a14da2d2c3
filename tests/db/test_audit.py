"""The audit trail on the real database: each action, through the real command, records who, what, which
target and the details, once (one row for a 10,000-job cancel too); the job path itself records nothing."""

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.accounts.identity import os_user_name, real_user_name
from dctoolkit.jobs import transitions
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.scheduling import wake
from dctoolkit.lib.ids import id_ranges
from dctoolkit.nodes.models import Node
from dctoolkit.operations.audit import AuditFilterError, parse_since, summary
from dctoolkit.operations.models import AuditEvent

AUDIT_TABLE = AuditEvent._meta.db_table


@pytest.fixture(autouse=True)
def storage(settings, tmp_path, monkeypatch):
    settings.DCT_STORAGE = tmp_path / "storage"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: waking the scheduler is a no-op
    monkeypatch.setattr(wake, "_redis", None)


def rows(owner, count: int, name: str = "fit") -> list[Job]:
    """`count` bare queued jobs of one submission (no files: cancel, hold and release need none)."""
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=count)
    now = timezone.now()
    return Job.objects.bulk_create(
        [Job(submission=sub, owner=owner, name=f"{name}-{i}", process=i, executable="t.sh", submitted_at=now)
         for i in range(count)]
    )  # fmt: skip


@pytest.fixture
def staged(alice, tmp_path):
    """Jobs submitted through intake, with their files (what edit and resubmit need)."""

    def make(count: int) -> list[Job]:
        folder = tmp_path / "in"
        folder.mkdir(exist_ok=True)
        (folder / "run.sh").write_text("#!/bin/sh\necho $1\n")
        (folder / "run.sh").chmod(0o755)
        return submit(f"executable = run.sh\narguments = $(Process)\nqueue = {count}\n", "fits.txt", alice,
                      FolderFiles(folder))  # fmt: skip

    return make


def run_cli(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def only_event() -> AuditEvent:
    (event,) = AuditEvent.objects.all()
    return event


# --- cancel / hold / release ---------------------------------------------------------------------
def test_a_cancel_of_one_job_records_who_cancelled_which_job(alice):
    (job,) = rows(alice, 1)
    run_cli("cancel", str(job.id), "--user", "alice")
    event = only_event()
    assert (event.actor, event.actor_name, event.action) == (alice, "alice", "cancel")
    assert (event.target_kind, event.target) == ("job", str(job.id))
    assert event.details == {"count": 1, "jobs": str(job.id), "selection": {"ids": str(job.id)}}


def test_a_cancel_of_a_whole_batch_is_one_insert_with_the_count_the_selector_and_the_ids(alice):
    jobs = rows(alice, 2_000)
    Job.objects.filter(id=jobs[0].id).update(state=JobState.SUCCEEDED)  # ended: not changed, not counted
    with CaptureQueriesContext(connection) as queries:
        run_cli("cancel", "--submission", str(jobs[0].submission_id), "--user", "alice", "--json")
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("INSERT")]
    assert len([sql for sql in inserts if AUDIT_TABLE in sql]) == 1, inserts
    event = only_event()
    assert (event.actor_name, event.action, event.target_kind) == ("alice", "cancel", "submission")
    assert event.target == str(jobs[0].submission_id)
    assert event.details == {
        "count": 1_999,
        "jobs": f"{jobs[1].id}-{jobs[-1].id}",
        "selection": {"submission": jobs[0].submission_id},
    }


def test_hold_and_release_by_a_glob_record_the_selector_and_the_jobs_they_changed(alice):
    jobs = rows(alice, 6)
    run_cli("hold", "--name", "fit-[135]", "--user", "alice")
    run_cli("release", "--state", "held", "--user", "alice")
    hold, release = AuditEvent.objects.order_by("id")
    expected = id_ranges([jobs[1].id, jobs[3].id, jobs[5].id])
    assert (hold.action, hold.target_kind, hold.target) == ("hold", "jobs", expected)
    assert hold.details["selection"] == {"name": "fit-[135]"} and hold.details["count"] == 3
    assert (release.action, release.target, release.details["selection"]) == ("release", expected, {"state": "held"})
    assert summary(hold.details) == f"3 jobs ({expected}); selected by name=fit-[135]"


def test_an_action_that_changes_nothing_records_nothing(alice):
    (job,) = rows(alice, 1)
    Job.objects.filter(id=job.id).update(state=JobState.FAILED)
    with pytest.raises(CommandError, match="it has already ended"):
        run_cli("cancel", str(job.id), "--user", "alice")
    assert not AuditEvent.objects.exists()


def test_an_operator_acting_for_a_user_is_recorded_as_that_user(alice):
    # `--user` is for operators (who hold the secret key); what they do is done as, and recorded as, that user.
    (job,) = rows(alice, 1)
    run_cli("hold", str(job.id), "--user", "alice")
    assert only_event().actor == alice


def test_the_job_path_records_nothing(alice, node):
    """Dispatch, start, end and the scheduler's requeue write no audit row: only people's actions do."""
    first, second = rows(alice, 2)
    for job in (first, second):
        attempt = transitions.claim(job.id, node.id, [], timezone.now())
        assert transitions.start(job.id, attempt, node.name, timezone.now())
    assert transitions.finish(first.id, 1, JobState.SUCCEEDED, timezone.now(), exit_code=0, run_seconds=1.0)
    assert transitions.requeue_node_jobs(node, "node lost", timezone.now()) == 1
    assert not AuditEvent.objects.exists()


# --- edit / resubmit -----------------------------------------------------------------------------
def test_an_edit_records_each_changed_job_before_and_after(alice, staged):
    jobs = staged(2)
    run_cli("edit", str(jobs[0].id), str(jobs[1].id), "request_cpus=2", "name=renamed", "--user", "alice")
    events = list(AuditEvent.objects.order_by("target"))
    assert [(e.actor_name, e.action, e.target_kind, e.target) for e in events] == [
        ("alice", "edit", "job", str(jobs[0].id)),
        ("alice", "edit", "job", str(jobs[1].id)),
    ]
    assert events[0].details == {
        "set": {"request_cpus": "2", "name": "renamed"},
        "before": {"name": jobs[0].name, "request_cpus": 1},
        "after": {"name": "renamed", "request_cpus": 2},
    }


def test_an_edit_with_a_start_time_keeps_it_as_json(alice, staged):
    (job,) = staged(1)
    when = (timezone.now() + timedelta(days=10)).replace(microsecond=0)
    run_cli("edit", str(job.id), f"start_after={when.isoformat()}", "--user", "alice")
    event = only_event()
    assert event.details["before"] == {"start_after": None}
    assert datetime.fromisoformat(event.details["after"]["start_after"]) == when


def test_a_resubmit_records_the_job_and_the_new_jobs(alice, staged):
    (job,) = staged(1)
    out = run_cli("resubmit", str(job.id), "--parsable", "--user", "alice")
    event = only_event()
    assert (event.actor_name, event.action, event.target) == ("alice", "resubmit", str(job.id))
    assert event.target_kind == "job"
    assert event.details == {"count": 1, "jobs": out.strip()}


def test_a_resubmit_of_a_submissions_failed_jobs_records_the_submission(alice, staged):
    jobs = staged(3)
    Job.objects.filter(id__in=[jobs[0].id, jobs[2].id]).update(state=JobState.FAILED)
    run_cli("resubmit", "--submission", str(jobs[0].submission_id), "--failed", "--user", "alice")
    event = only_event()
    assert (event.action, event.target_kind, event.target) == ("resubmit", "submission", str(jobs[0].submission_id))
    assert event.details["failed"] is True and event.details["count"] == 2


# --- nodes ---------------------------------------------------------------------------------------
def test_drain_and_resume_record_who_did_it_to_which_node(node):
    run_cli("drain", "node-1")
    run_cli("drain", "node-1")  # already drained: nothing changes, nothing is recorded
    run_cli("resume", "node-1")
    drain, resume = AuditEvent.objects.order_by("id")
    # The caller (an operator: their OS user name), who has no dctoolkit account: named, none made for them.
    assert (drain.actor, drain.actor_name) == (None, os_user_name())
    assert not get_user_model().objects.filter(username=os_user_name()).exists()
    assert [(e.action, e.target_kind, e.target) for e in (drain, resume)] == [
        ("drain", "node", "node-1"),
        ("resume", "node", "node-1"),
    ]
    assert not Node.objects.get(name="node-1").drained
    account = get_user_model().objects.create_user(os_user_name())
    run_cli("drain", "node-1")
    assert AuditEvent.objects.latest("id").actor == account, "with an account: the account"


def test_adduser_records_the_account_it_made(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-77\n"))
    run_cli("adduser", "carol", "--staff")
    event = only_event()
    assert (event.actor_name, event.action, event.target_kind, event.target) == (os_user_name(), "add", "user", "carol")
    assert event.details == {"staff": True}


# --- ./dct audit ---------------------------------------------------------------------------------
def test_audit_json_lists_the_events_newest_first_and_filters_them(alice, node):
    (job,) = rows(alice, 1)
    run_cli("hold", str(job.id), "--user", "alice")
    run_cli("drain", "node-1")
    AuditEvent.objects.filter(action="hold").update(at=timezone.now() - timedelta(days=10))
    listed = json.loads(run_cli("audit", "--json"))["events"]
    assert [e["action"] for e in listed] == ["drain", "hold"]
    hold = listed[1]
    assert {k: hold[k] for k in ("actor", "action", "target_kind", "target")} == {
        "actor": "alice", "action": "hold", "target_kind": "job", "target": str(job.id),
    }  # fmt: skip
    assert set(hold) == {"id", "at", "actor", "action", "target_kind", "target", "details", "summary"}
    assert [e["action"] for e in json.loads(run_cli("audit", "--json", "--since", "7d"))["events"]] == ["drain"]
    assert [e["action"] for e in json.loads(run_cli("audit", "--json", "--user", "alice"))["events"]] == ["hold"]
    assert json.loads(run_cli("audit", "--json", "--action", "cancel"))["events"] == []
    table = run_cli("audit")
    assert table.splitlines()[0].split() == ["WHEN", "WHO", "ACTION", "TARGET", "DETAILS"]
    assert f"alice  hold    job {job.id}" in table


@pytest.mark.parametrize("since", ["yesterday", "2026-02-30", "7 parsecs", "3w", "0d"])
def test_audit_since_that_is_no_date_says_how_to_write_it(db, since):
    with pytest.raises(CommandError) as caught:
        run_cli("audit", "--since", since)
    assert str(caught.value).startswith(f"--since '{since}' is not a date, a time or an age; write it like 2026-11-25")


def test_since_reads_a_date_a_time_and_an_age():
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-11-25T14:00:00+00:00", now) == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    day = parse_since("2026-11-25", now)
    assert (day.date().isoformat(), day.hour, day.minute) == ("2026-11-25", 0, 0) and timezone.is_aware(day)
    with pytest.raises(AuditFilterError):
        parse_since("", now)


def test_audit_is_refused_to_a_caller_who_is_neither_staff_nor_an_operator(db, settings):
    settings.SECRET_KEY = ""  # this process cannot read the server's key: no operator
    get_user_model().objects.create_user(real_user_name())
    with pytest.raises(CommandError, match="is not staff: the audit trail is for staff"):
        run_cli("audit")
    get_user_model().objects.filter(username=real_user_name()).update(is_staff=True)
    assert run_cli("audit").strip() == "no events yet"


def test_audit_limit_must_be_a_number(db):
    with pytest.raises(CommandError, match="--limit many: give a whole number from 1 to 100,000"):
        run_cli("audit", "--limit", "many")


def test_an_edit_to_the_same_value_records_nothing(alice, staged):
    (job,) = staged(1)
    run_cli("edit", str(job.id), f"name={job.name}", "request_cpus=1", "--user", "alice")
    assert not AuditEvent.objects.exists()
