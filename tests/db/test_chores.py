"""The scheduler's once-a-second chores: what a round costs when there is nothing to do, and that the mail
step's probe of what may be due answers as the mail that is due."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.jobs import notify
from dctoolkit.jobs.management.commands import scheduler
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.scheduling import dispatch
from tests.db.conftest import sub

pytestmark = pytest.mark.django_db


def end(jobs: list[Job], state: JobState = JobState.SUCCEEDED) -> None:
    Job.objects.filter(id__in=[j.id for j in jobs]).update(state=state, finished_at=timezone.now(), exit_code=0)


def statements_per_chore() -> Counter[str]:
    """Each chore's statements in one chores round (the scheduling pass left out), every chore due."""
    command = scheduler.Command()
    command.policies_at = -scheduler.POLICY_INTERVAL_SECONDS
    counts: Counter[str] = Counter()
    for step in command.chore_steps():
        if step is dispatch.schedule_pass:
            continue
        with CaptureQueriesContext(connection) as queries:
            step(timezone.now())
        counts[step.__name__] = len(queries)
    return counts


IDLE_ROUND = {
    "sweep_lost_nodes": 1,
    "resend_stale": 1,
    "resolve_dependencies": 1,
    "advance_dags": 1,
    "queue_due_retries": 1,
    "release_waiting": 1,
    "job_policies": 1,
    "notify_step": 1,
    "purge_expired_files": 0,  # DCT_RETENTION unset
}


def test_an_idle_round_of_chores_makes_one_statement_per_chore_beside_ended_jobs(no_scheduler, alice, folder, node):
    # The bench's throughput run as the chores see it: ended jobs without mail, queued ones, a node.
    for _ in range(3):
        end(sub("", alice, folder))
    end(sub("queue = 4\n", alice, folder))
    sub("queue = 2\n", alice, folder)
    # Mail owed to nobody: a notification=error job that succeeded (settled by the first round).
    end(sub("email = a@lab.example\nnotification = error\n", alice, folder))
    statements_per_chore()  # the first round settles what it finds
    assert statements_per_chore() == IDLE_ROUND


def test_the_mail_probe_is_true_while_an_ended_job_owes_mail_and_false_once_it_went(no_scheduler, alice, folder):
    (job,) = sub("email = a@lab.example\n", alice, folder)
    assert not notify.mail_may_be_due()  # queued: nothing owed yet
    end([job], JobState.FAILED)
    assert notify.mail_may_be_due()
    assert notify.send_due(timezone.now()) == 1
    assert not notify.mail_may_be_due()
    assert notify.send_due(timezone.now()) == 0
    assert [m.to for m in mail.outbox] == [["a@lab.example"]]


def test_a_notification_error_job_that_succeeded_is_marked_done_unmailed_and_a_failed_one_is_mailed(
    no_scheduler, alice, folder
):
    (ok,) = sub("email = ok@lab.example\nnotification = error\n", alice, folder)
    (bad,) = sub("email = bad@lab.example\nnotification = error\n", alice, folder)
    end([ok])
    end([bad], JobState.FAILED)
    assert notify.send_due(timezone.now()) == 1
    assert [m.to for m in mail.outbox] == [["bad@lab.example"]]
    assert Job.objects.get(id=ok.id).notified
    assert not notify.mail_may_be_due()


def test_a_notification_error_batch_that_all_succeeded_is_marked_done_without_a_digest(no_scheduler, alice, folder):
    jobs = sub("email = b@lab.example\nnotification = error\nqueue = 3\n", alice, folder)
    end(jobs[:2])
    notify.send_due(timezone.now())
    assert not Submission.objects.get(id=jobs[0].submission_id).notified  # one job still queued
    end(jobs[2:])
    assert notify.send_due(timezone.now()) == 0
    assert Submission.objects.get(id=jobs[0].submission_id).notified
    assert not Job.objects.filter(submission_id=jobs[0].submission_id, notified=False).exists()
    assert not notify.mail_may_be_due()
    assert mail.outbox == []


def test_a_batch_with_a_failed_job_still_gets_its_one_digest(no_scheduler, alice, folder):
    jobs = sub("email = b@lab.example\nnotification = error\nqueue = 2\n", alice, folder)
    end(jobs[:1])
    end(jobs[1:], JobState.FAILED)
    assert notify.send_due(timezone.now()) == 1
    assert notify.send_due(timezone.now()) == 0
    assert [m.to for m in mail.outbox] == [["b@lab.example"]]
    assert not notify.mail_may_be_due()


def test_a_round_while_a_mailed_batch_runs_reads_what_is_due_and_settles_nothing(no_scheduler, alice, folder):
    # Its ended job keeps the probe true until the digest goes: each such round reads what is due, and
    # writes nothing (nothing is there to settle).
    jobs = sub("email = b@lab.example\nnotification = error\nqueue = 3\n", alice, folder)
    end(jobs[:2])
    with CaptureQueriesContext(connection) as queries:
        assert notify.send_due(timezone.now()) == 0
    statements = [q["sql"].split(None, 1)[0].upper() for q in queries]
    assert statements == ["SELECT"] * 4  # the probe; the ended single jobs, the DAGs, the ended batches


def test_a_round_that_finds_something_to_settle_settles_it_and_still_mails_the_rest(no_scheduler, alice, folder):
    (ok,) = sub("email = ok@lab.example\nnotification = error\n", alice, folder)
    (bad,) = sub("email = bad@lab.example\n", alice, folder)
    end([ok])
    end([bad], JobState.FAILED)
    assert notify.send_due(timezone.now()) == 1
    assert [m.to for m in mail.outbox] == [["bad@lab.example"]]
    assert Job.objects.get(id=ok.id).notified and not notify.mail_may_be_due()
