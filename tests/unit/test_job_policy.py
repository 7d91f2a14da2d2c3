"""HTCondor's job policy expressions (on_exit_hold, on_exit_remove, periodic_*), evaluated by classad2 over the
job's attributes as HTCondor names them."""

import classad2
import pytest

from dctoolkit.jobs.jobpolicy import (
    HOLD_BY_POLICY,
    NOTHING,
    Decision,
    JobFacts,
    JobStatus,
    PolicyError,
    check,
    has_periodic,
    on_exit,
    periodic,
)

OSG_HOLD = "(ExitBySignal == True) || (ExitCode != 0)"
OSG_RELEASE = "(NumJobStarts < 5) && ((CurrentTime - EnteredCurrentStatus) > 60)"


def ran(exit_code: int, starts: int = 1, **kwargs) -> JobFacts:
    return JobFacts(
        now=10_000.0, status=JobStatus.RUNNING, entered_status=9_000.0, qdate=8_000.0, starts=starts,
        exit_code=exit_code, **kwargs,
    )  # fmt: skip


def held(starts: int, held_for: float, **kwargs) -> JobFacts:
    return JobFacts(
        now=10_000.0, status=JobStatus.HELD, entered_status=10_000.0 - held_for, qdate=8_000.0, starts=starts,
        exit_code=1, hold_code=HOLD_BY_POLICY, hold_reason="held by on_exit_hold", **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("exit_code", "action"),
    [(0, ""), (1, "hold"), (-9, "hold")],  # -9: killed by signal 9 (ExitBySignal, ExitSignal 9)
)
def test_osg_on_exit_hold_holds_a_failed_or_signalled_run(exit_code, action):
    assert on_exit({"on_exit_hold": OSG_HOLD}, ran(exit_code)).action == action


def test_a_held_run_names_the_expression_unless_a_reason_is_given():
    assert on_exit({"on_exit_hold": OSG_HOLD}, ran(3)) == Decision("hold", f"held by on_exit_hold = {OSG_HOLD}", 0)
    policy = {
        "on_exit_hold": "ExitCode == 3",
        "on_exit_hold_reason": 'strcat("exit code ", ExitCode, " after ", NumJobStarts, " starts")',
        "on_exit_hold_subcode": "ExitCode + 40",
    }
    assert on_exit(policy, ran(3, starts=2)) == Decision("hold", "exit code 3 after 2 starts", 43)


def test_exit_signal_and_exit_code_are_as_htcondor_sets_them():
    assert on_exit({"on_exit_hold": "ExitBySignal && ExitSignal == 9"}, ran(-9)).action == "hold"
    # After a signal there is no ExitCode: ExitCode != 0 is UNDEFINED, which holds nothing.
    assert on_exit({"on_exit_hold": "ExitCode != 0"}, ran(-9)) is NOTHING


def test_on_exit_remove_false_runs_again_and_undefined_lets_the_job_leave():
    assert on_exit({"on_exit_remove": "ExitCode == 0"}, ran(2)).action == "rerun"
    assert on_exit({"on_exit_remove": "ExitCode == 0"}, ran(0)) is NOTHING
    assert on_exit({"on_exit_remove": "NoSuchAttribute == 0"}, ran(2)) is NOTHING


def test_on_exit_hold_is_asked_before_on_exit_remove():
    policy = {"on_exit_hold": "ExitCode == 1", "on_exit_remove": "false"}
    assert [on_exit(policy, ran(code)).action for code in (1, 2)] == ["hold", "rerun"]


@pytest.mark.parametrize(
    ("starts", "held_for", "released"),
    [(1, 61, True), (4, 3600, True), (1, 30, False), (5, 3600, False)],
)
def test_osg_periodic_release_waits_a_minute_and_stops_after_five_starts(starts, held_for, released):
    decided = periodic({"periodic_release": OSG_RELEASE}, held(starts, held_for))
    assert decided == (Decision("release", f"released by periodic_release = {OSG_RELEASE}") if released else NOTHING)


def test_periodic_release_reads_the_hold_code_and_is_not_asked_of_a_job_not_held():
    policy = {"periodic_release": "HoldReasonCode == 3 && HoldReasonSubCode == 0"}
    assert periodic(policy, held(1, 0)).action == "release"
    assert periodic(policy, held(1, 0, hold_subcode=2)) is NOTHING
    assert periodic({"periodic_release": "true"}, ran(1)) is NOTHING


def test_periodic_remove_wins_over_hold_and_release():
    policy = {"periodic_remove": "NumJobStarts >= 3", "periodic_release": "true", "periodic_hold": "true"}
    assert periodic(policy, held(3, 0)).action == "remove"
    assert periodic(policy, held(2, 0)).action == "release"
    assert periodic(policy, ran(0, starts=2)).action == "hold"


def test_periodic_hold_reads_the_wall_clock_time_and_its_own_attributes():
    policy = {"periodic_hold": "RemoteWallClockTime > MaxWall", "periodic_hold_reason": '"ran too long"'}
    facts = ran(0, wall_seconds=120.0, attributes={"MaxWall": "100"})
    assert periodic(policy, facts) == Decision("hold", "ran too long", 0)
    assert periodic(policy, ran(0, wall_seconds=50.0, attributes={"MaxWall": "100"})) is NOTHING


def test_current_time_and_time_function_both_read_the_clock():
    now = classad2.ExprTree("time()").eval()
    facts = JobFacts(now=now, status=JobStatus.HELD, entered_status=now - 100, qdate=now - 200, hold_code=1)
    assert periodic({"periodic_release": "(time() - EnteredCurrentStatus) > 60"}, facts).action == "release"
    assert periodic({"periodic_release": "(CurrentTime - QDate) > 300"}, facts) is NOTHING


def test_only_hold_release_and_remove_need_the_housekeeping():
    assert has_periodic({"periodic_release": "true"})
    assert not has_periodic({"on_exit_hold": "true", "periodic_hold_reason": '"x"'})


def test_a_bad_expression_names_its_key_and_an_example():
    with pytest.raises(PolicyError, match=r"^on_exit_remove = \(\(: not a ClassAd expression; write it as"):
        check("on_exit_remove", "((")
    with pytest.raises(PolicyError, match=r"^periodic_hold is 10,001 characters long; keep it under 10000$"):
        check("periodic_hold", "1" * 10_001)


def test_num_holds_counts_the_holds_so_periodic_remove_can_stop_a_job_held_twice():
    policy = {"periodic_remove": "NumHolds >= 2", "periodic_release": "true"}
    assert periodic(policy, held(2, 0, holds=2)).action == "remove"
    assert periodic(policy, held(1, 0, holds=1)).action == "release"
    assert periodic({"periodic_hold": "NumHolds == 0"}, ran(0)).action == "hold", "never held: NumHolds is 0"


def test_owner_is_the_jobs_user_name():
    policy = {"periodic_hold": 'Owner == "alice"', "periodic_hold_reason": 'strcat("held for ", Owner)'}
    assert periodic(policy, ran(0, owner="alice")) == Decision("hold", "held for alice", 0)
    assert periodic(policy, ran(0, owner="bob")) is NOTHING
