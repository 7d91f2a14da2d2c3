"""Weighted billing against the test database: a finished job charges its owner what it held, weighted by
DCT_BILLING; a running GPU job counts for more in the standings the scheduler orders users by."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from dctoolkit.accounts.fairshare import charge
from dctoolkit.accounts.models import Account, DailyUsage
from dctoolkit.accounts.usage import charge_job, standings
from dctoolkit.jobs.models import Job, JobState, Submission


def test_a_finished_job_charges_what_it_held_weighted(db, settings):
    settings.DCT_BILLING = "cpu=1,gpu=8,mem_gb=0.25"
    alice = get_user_model().objects.create_user("alice")
    now = timezone.now()
    charge_job(alice.id, 1, 10.0, now, gpus=1, memory_mb=4096)  # (1 + 8 + 1) a second for 10 s
    assert Account.objects.get(user=alice).usage == 100.0
    assert DailyUsage.objects.get(user=alice).cpu_seconds == 100.0
    settings.DCT_BILLING = "cpu=1"
    charge_job(alice.id, 1, 10.0, now, gpus=1, memory_mb=4096)
    assert Account.objects.get(user=alice).usage == 110.0, "the default charges cpus x wall seconds"


def test_a_running_gpu_job_weighs_in_the_standings(db, settings):
    settings.DCT_BILLING = "cpu=1,gpu=8"
    users = [get_user_model().objects.create_user(name) for name in ("gpu-user", "cpu-user")]
    now = timezone.now()
    for user, gpus in zip(users, (1, 0), strict=True):
        sub = Submission.objects.create(owner=user, source_name="job.txt", text="", job_count=1)
        started = now - timedelta(seconds=10)
        Job.objects.create(submission=sub, owner=user, name="t", executable="t.sh", request_gpus=gpus,
                           state=JobState.RUNNING, submitted_at=now, started_at=started)  # fmt: skip
    found = standings([u.id for u in users], now)
    assert (found[users[0].id].running_charge, found[users[1].id].running_charge) == (90.0, 10.0)


def test_the_database_decays_an_account_exactly_as_fair_share_computes_it(alice, settings):
    # The charge is one UPDATE whose decay the database computes: the usage is the very float Python computes.
    settings.DCT_FAIRSHARE_HALFLIFE_SECONDS = 3600.0
    start = timezone.now()
    expected, since, days = 0.0, None, set()
    for gap, cost in ((0, 7.0), (1234.567891, 3.0), (0.000001, 0.5), (86400 * 3 + 17.25, 11.0), (0, 0.0)):
        now = (since or start) + timedelta(seconds=gap)
        charge_job(alice.id, 1, cost, now)
        expected, since = charge(expected, since, now, 3600.0, cost), now
        days.add(now.date())
        account = Account.objects.get(user=alice)
        assert (account.usage, account.usage_at) == (expected, now)
    assert DailyUsage.objects.filter(user=alice).count() == len(days), "a row for each day charged"
