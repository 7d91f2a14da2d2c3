"""Start times and throttles, pure: the keys as written, and what a waiting job's reason says."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from dctoolkit.jobs.intake.keys import start_time
from dctoolkit.jobs.intake.parse import SubmissionError, parse_submission
from dctoolkit.jobs.scheduling.upstream import start_reason, throttle_reason

NOW = datetime(2026, 12, 1, 21, 35, tzinfo=UTC).timestamp()


def test_a_start_time_is_an_iso_time_or_a_delay_from_now():
    assert start_time("2026-12-01T22:00+00:00", NOW) == NOW + 25 * 60
    assert start_time("2026-12-01 22:00Z", NOW) == NOW + 25 * 60
    assert start_time("+30m", NOW) == NOW + 30 * 60
    assert start_time("now+1h30m", NOW) == NOW + 90 * 60
    # No offset: the server's local time (the process's TZ, which Django sets to TIME_ZONE).
    local = datetime(2026, 12, 1, 22, 0).astimezone().timestamp()
    assert start_time("'2026-12-01T22:00'", local - 60) == local


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "start_after = yesterday is not a time; write start_after = 2026-12-01T22:00"),
        ("2026-12-01T21:00+00:00", "start_after = 2026-12-01T21:00+00:00 is in the past (it is "),
        ("+0m", "start_after = +0m: '0m' is not a positive duration"),
        ("+ages", "start_after = +ages: 'ages' is not a duration"),
        ("2028-12-01T22:00+00:00", "start_after = 2028-12-01T22:00+00:00 is more than a year ahead"),
    ],
)
def test_a_start_time_that_is_not_one_or_is_past_is_refused(value, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace("+", r"\+")):
        start_time(value, NOW)


def test_the_keys_are_read_into_each_job_with_htcondors_names():
    before = time.time()
    (job,) = parse_submission("executable = a.sh\nstart_after = +30m\nmax_running = 3\n").jobs
    assert before + 1800 <= job.start_after <= time.time() + 1800
    assert job.max_running == 3
    (job,) = parse_submission("executable = a.sh\ndeferral_time = (CurrentTime + 600)\nmax_materialize = 4\n").jobs
    assert before + 600 <= job.start_after <= time.time() + 600
    assert job.max_running == 4
    later = int(before) + 3600
    (job,) = parse_submission(f"executable = a.sh\nDeferralTime = {later}\nmax_idle = 5\n").jobs
    assert (job.start_after, job.max_running) == (later, 5)
    (job,) = parse_submission("executable = a.sh\n").jobs
    assert (job.start_after, job.max_running) == (None, None)


def test_bad_values_are_refused_at_their_lines_all_at_once():
    with pytest.raises(SubmissionError) as raised:
        parse_submission("executable = a.sh\nstart_after = yesterday\nmax_running = 0\nqueue\n", "job.txt")
    text = str(raised.value)
    assert "job.txt:2: start_after = yesterday is not a time" in text
    assert "job.txt:3: max_running = 0 is out of range; use 1 to 100000" in text
    with pytest.raises(SubmissionError) as raised:
        parse_submission("executable = a.sh\ndeferral_time = soon\n", "job.txt")
    assert "job.txt:2: deferral_time = soon: give Unix seconds (date +%s) or (CurrentTime + 600)" in str(raised.value)


def test_the_reason_says_until_when_and_how_long_is_left(settings):
    settings.TIME_ZONE = "UTC"
    start = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    assert start_reason(start, start - timedelta(minutes=25)) == "starts after 2026-12-01 22:00 (in 25 min)"
    assert start_reason(start, start - timedelta(seconds=20)) == "starts after 2026-12-01 22:00 (in 20 s)"
    assert start_reason(start, start - timedelta(hours=3)) == "starts after 2026-12-01 22:00 (in 3.0 h)"
    assert start_reason(start, start - timedelta(days=2)) == "starts after 2026-12-01 22:00 (in 2.0 days)"
    settings.TIME_ZONE = "Europe/Oslo"
    assert start_reason(start, start - timedelta(minutes=25)) == "starts after 2026-12-01 23:00 (in 25 min)"


def test_the_throttle_reason_names_the_limit_the_running_jobs_and_the_batch():
    assert throttle_reason(2, 2, 7) == "max_running = 2: 2 jobs of batch 7 running"
    assert throttle_reason(1, 1, 7) == "max_running = 1: 1 job of batch 7 running"
    assert throttle_reason(3, 1, 7) == "max_running = 3: 1 of batch 7 running; it is queued within a second"


def test_two_keys_giving_the_start_time_are_refused():
    with pytest.raises(SubmissionError, match=r"job.txt:3: deferral_time and start_after \(line 2\) both give"):
        parse_submission("executable = a.sh\nstart_after = +1h\ndeferral_time = (CurrentTime + 60)\n", "job.txt")
