"""Retries, pure: which exits run again, after how long, and the keys as written."""

import pytest

from dctoolkit.jobs.intake.parse import SubmissionError, parse_submission
from dctoolkit.jobs.retries import RetryPolicy, Verdict, judge_exit, retry_delay


def test_an_exit_other_than_the_success_code_runs_again_until_the_retries_are_used():
    policy = RetryPolicy(max_retries=2)
    assert judge_exit(0, policy, 0) == Verdict(succeeded=True)
    assert judge_exit(3, policy, 0) == Verdict(succeeded=False, retry=True, note="retry 1 of 2")
    assert judge_exit(3, policy, 2) == Verdict(succeeded=False, note="after 2 retries")


def test_the_success_code_and_retry_until_change_what_ends_it():
    policy = RetryPolicy(max_retries=5, success_exit_code=3, retry_until=7)
    assert judge_exit(3, policy, 0).succeeded
    assert judge_exit(0, policy, 0).retry, "exit 0 is a failure when another code means success"
    assert judge_exit(7, policy, 0) == Verdict(succeeded=False, note="retry_until: exit status 7 ends the retries")


def test_the_delay_doubles_up_to_ten_minutes():
    assert [retry_delay(30, n) for n in range(6)] == [30, 60, 120, 240, 480, 600]
    assert retry_delay(None, 3) == 0.0
    assert judge_exit(1, RetryPolicy(max_retries=3, retry_delay_seconds=30), 1).delay_seconds == 60


def test_the_keys_are_read_into_each_job():
    (job,) = parse_submission(
        "executable = a.sh\nmax_retries = 3\nsuccess_exit_code = 2\nretry_until = ExitCode == 9\nretry_delay = 30s\n"
    ).jobs
    assert (job.max_retries, job.success_exit_code, job.retry_until, job.retry_delay_seconds) == (3, 2, 9, 30.0)
    (job,) = parse_submission("executable = a.sh\nretry_until = ExitCode =?= 4\n").jobs
    assert job.retry_until == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_retries = -1", "job.txt:2: max_retries = -1 is out of range; use 0 to 100"),
        ("max_retries = lots", "job.txt:2: max_retries must be a whole number, got 'lots'"),
        ("success_exit_code = 256", "job.txt:2: success_exit_code = 256 is out of range; use 0 to 255"),
        ("retry_until = ExitCode > 3", "job.txt:2: retry_until = ExitCode > 3: give an exit code (0 to 255)"),
        ("retry_delay = soon", "job.txt:2: 'soon' is not a duration"),
    ],
)
def test_a_bad_retry_key_is_refused_at_its_line(line, message):
    with pytest.raises(SubmissionError) as refused:
        parse_submission(f"executable = a.sh\n{line}\n")
    assert str(refused.value).startswith(message)
