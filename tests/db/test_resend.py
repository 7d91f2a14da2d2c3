"""A dispatched job its node never starts (the node's run cannot reach the database, or the message was lost)
is sent again every RESEND_AFTER_SECONDS, and its reason says so where its owner looks (`./dct jobs`)."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from dctoolkit.jobs import transitions
from dctoolkit.jobs.models import Job
from dctoolkit.jobs.scheduling import housekeeping
from tests.db.conftest import sub

pytestmark = pytest.mark.usefixtures("no_scheduler")

REASON = (
    "not started on node-1 since it was sent: node-1 may not reach the database, or lost the message; "
    "sending it again every 15 s"
)


def test_a_job_sent_again_says_why_and_the_reason_goes_when_it_starts(alice, node, folder, monkeypatch):
    sent = []
    monkeypatch.setattr(housekeeping, "send_run", lambda *run: sent.append(run) or True)
    (job,) = sub("", alice, folder)
    now = timezone.now()
    attempt = transitions.claim(job.id, node.id, [], now - timedelta(seconds=20))
    assert housekeeping.resend_stale(now) == 1 and sent == [(job.id, attempt, "node-1", 1)]
    assert Job.objects.get(id=job.id).reason == REASON
    out = io.StringIO()
    call_command("jobs", "--user", "alice", stdout=out)
    assert REASON in out.getvalue(), out.getvalue()
    assert housekeeping.resend_stale(now + timedelta(seconds=5)) == 0, "sent again only after 15 s"
    assert transitions.start(job.id, attempt, "node-1", now + timedelta(seconds=6))
    assert Job.objects.get(id=job.id).reason == "", "running: nothing to explain"
