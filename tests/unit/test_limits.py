"""Caps per user (accounts.limits): the caps that hold, the planner holding a capped user's jobs back, and
the words of the reason and of the refusal.  Pure functions, no services."""

from dctoolkit.accounts.limits import (
    NO_CAPS,
    Caps,
    GroupTotals,
    Room,
    caps_of,
    held_back,
    held_back_by_group,
    over_queued,
    room,
)
from dctoolkit.jobs.scheduling.policy import FreeNode, QueuedJob, pick_assignments


def test_an_override_replaces_its_default_and_0_is_no_cap():
    defaults = Caps(4, 2, 100)
    assert caps_of(defaults, None, None, None) == defaults
    assert caps_of(defaults, 8, None, 0) == Caps(8, 2, None)
    assert caps_of(Caps(0, 0, 0), None, None, None) == NO_CAPS
    assert caps_of(NO_CAPS, 1, None, None) == Caps(1, None, None)


def test_room_is_what_is_left_and_says_which_cap_a_job_would_pass():
    left = room(Caps(3, 2), running_jobs=2, running_gpus=1)
    assert (left.jobs, left.gpus) == (1, 1)
    assert left.blocks(gpus=2) == "running_gpus" and left.blocks(gpus=1) == ""
    left.take(1)
    assert left.blocks(gpus=0) == "running_jobs"
    assert Room().blocks(gpus=64) == ""


def node(cpus=8, gpus=4):
    return FreeNode("node-1", cpus, 8192, cpus, 8192, free_gpus=list(range(gpus)), total_gpus=gpus)


def test_the_planner_starts_no_more_of_a_users_jobs_than_their_cap_and_others_fill_the_rest():
    alice = [QueuedJob(i, 1) for i in range(1, 6)]
    bob = [QueuedJob(i, 2) for i in range(11, 16)]
    picks = pick_assignments({1: alice, 2: bob}, [node()], {}, rooms={1: room(Caps(2), 1, 0)})
    placed = [a.job_id for a in picks.assignments]
    assert [j for j in placed if j < 10] == [1], "alice runs 1 of her 2 already"
    assert [j for j in placed if j > 10] == [11, 12, 13, 14, 15]
    # The rooms given are not changed: asking again starts from the same caps.
    again = pick_assignments({1: alice, 2: bob}, [node()], {}, rooms={1: room(Caps(2), 1, 0)})
    assert again.assignments == picks.assignments


def test_a_gpu_cap_holds_back_the_job_that_would_pass_it():
    jobs = [QueuedJob(1, 1, gpus=2), QueuedJob(2, 1, gpus=2)]
    picks = pick_assignments({1: jobs}, [node()], {}, rooms={1: room(Caps(None, 3), 0, 0)})
    assert [a.job_id for a in picks.assignments] == [1]


def test_the_reason_and_the_refusal_name_the_cap():
    assert held_back(Caps(4), 4, 0, 0, "alice") == (
        "held back by a cap: alice may run 4 jobs at once and runs 4 (DCT_MAX_RUNNING_JOBS or ./dct limits alice)"
    )
    assert held_back(Caps(None, 4), 2, 3, 2, "bob") == (
        "held back by a cap: bob may hold 4 GPUs at once and holds 3; this job needs 2 "
        "(DCT_MAX_RUNNING_GPUS or ./dct limits bob)"
    )
    assert held_back(Caps(4, 4), 3, 3, 1, "bob") == ""
    assert over_queued(Caps(None, None, 100), 95, 10, "alice") == (
        "alice may have 100 jobs waiting, queued or held and has 95; this submission adds 10, so at most 5 more "
        "fit (DCT_MAX_QUEUED_JOBS or ./dct limits alice); nothing was queued"
    )
    assert over_queued(Caps(None, None, 100), 90, 10, "alice") == ""
    assert over_queued(NO_CAPS, 10**6, 10**6, "alice") == ""


def test_a_members_cap_names_their_group_as_a_place_it_may_come_from():
    assert held_back(Caps(1), 1, 0, 0, "bob", "bio") == (
        "held back by a cap: bob may run 1 jobs at once and runs 1 "
        "(DCT_MAX_RUNNING_JOBS, ./dct limits --group bio or ./dct limits bob)"
    )
    assert over_queued(Caps(None, None, 2), 2, 1, "bob", "bio").endswith(
        "(DCT_MAX_QUEUED_JOBS, ./dct limits --group bio or ./dct limits bob); nothing was queued"
    )


def test_a_groups_total_caps_hold_its_members_jobs_together_and_not_their_jobs_charging_another_group():
    # Group 7 may hold 3 GPUs in all and holds 1: two members' 1-GPU jobs fit, a third not; group 8's job runs.
    alice = [
        QueuedJob(1, 1, gpus=1, group_id=7),
        QueuedJob(2, 1, gpus=1, group_id=7),
        QueuedJob(3, 1, gpus=1, group_id=8),
    ]
    bob = [QueuedJob(11, 2, gpus=1, group_id=7), QueuedJob(12, 2, group_id=7)]
    pools = {7: GroupTotals("bio", None, 3, runs=1, holds=1).room()}
    picks = pick_assignments({1: alice, 2: bob}, [node(gpus=8)], {}, group_rooms=pools)
    placed = sorted(a.job_id for a in picks.assignments)
    assert placed == [1, 3, 11, 12], "alice's second GPU job of group 7 would pass its 3 GPUs"
    assert pools[7] == Room(None, 2), "the rooms given are not changed"
    jobs_cap = {7: GroupTotals("bio", 2, None, runs=0).room()}
    placed = sorted(
        a.job_id for a in pick_assignments({1: alice, 2: bob}, [node(gpus=8)], {}, group_rooms=jobs_cap).assignments
    )
    assert placed == [1, 3, 11], "two of group 7's jobs in all, and alice's job charging group 8"


def test_a_groups_total_cap_is_named_in_the_reason():
    assert held_back_by_group(GroupTotals("bio", 4, None, runs=4), 0) == (
        "held back by a cap: group bio may run 4 jobs at once, all members together, and runs 4 "
        "(./dct limits --group bio --total-running-jobs N)"
    )
    assert held_back_by_group(GroupTotals("bio", None, 4, runs=2, holds=3), 2) == (
        "held back by a cap: group bio may hold 4 GPUs at once, all members together, and holds 3; this job needs 2 "
        "(./dct limits --group bio --total-running-gpus N)"
    )
    assert held_back_by_group(GroupTotals("bio", 4, 4, runs=3, holds=3), 1) == ""
