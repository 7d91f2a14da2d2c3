"""Two-level fair share (accounting groups): groups by usage over share first, then users within their group.

Pure arithmetic (`accounts.fairshare`): a user in no group is a team of one, so without groups every order is
the one-level order."""

import random

from dctoolkit.accounts.fairshare import (
    Turns,
    group_team,
    lone,
    priority_order,
    serve_order,
)
from dctoolkit.jobs.scheduling.policy import FreeNode, QueuedJob, pick_assignments


def served(rates, usage, teams=None, count=None):
    return [uid for uid, _ in serve_order(rates, usage, teams=teams, count=count).order]


def test_a_group_with_more_usage_goes_after_a_lone_user_even_when_its_member_has_used_nothing():
    usage = {1: 0.0, 2: 80.0, 3: 50.0}  # 1 and 2 in group 7 (usage 100), 3 alone
    teams = {1: group_team(7, 100.0, 0.0, 1.0), 2: group_team(7, 100.0, 0.0, 1.0)}
    assert priority_order(usage) == [1, 3, 2]  # one level: by the users' own usage
    assert priority_order(usage, teams) == [3, 1, 2]  # two levels: the group's usage first


def test_within_a_group_its_members_go_by_their_own_usage():
    usage = {1: 1.0, 2: 0.0}
    teams = {uid: group_team(7, 5.0, 0.0, 1.0) for uid in usage}
    assert served({1: [1, 1], 2: [1, 1]}, usage, teams) == [2, 1, 2, 1]


def test_a_group_share_scales_its_usage_before_the_order():
    usage = {1: 0.0, 2: 0.0}
    # Group 7 used 300 with share 3, group 8 used 150 with share 1: 100 against 150, so 7 goes first.
    teams = {1: group_team(7, 300.0, 0.0, 3.0), 2: group_team(8, 150.0, 0.0, 1.0)}
    assert priority_order(usage, teams) == [1, 2]
    teams = {1: group_team(7, 300.0, 0.0, 1.0), 2: group_team(8, 150.0, 0.0, 1.0)}
    assert priority_order(usage, teams) == [2, 1]


def test_one_pass_hands_out_turns_as_the_group_shares_say():
    teams = {1: group_team(7, 0.0, 0.0, 3.0), 2: group_team(8, 0.0, 0.0, 1.0)}
    order = served({1: [1.0] * 20, 2: [1.0] * 20}, {}, teams, count=16)
    assert order.count(1) == 12 and order.count(2) == 4  # 3 : 1


def test_a_job_given_to_one_member_is_charged_to_the_whole_group():
    # Users 1 and 2 share group 7; user 3 is alone. All start at 0: the group's two members between them get
    # as many turns as user 3 alone.
    teams = {1: group_team(7, 0.0, 0.0, 1.0), 2: group_team(7, 0.0, 0.0, 1.0)}
    order = served({1: [1.0] * 10, 2: [1.0] * 10, 3: [1.0] * 10}, {}, teams, count=6)
    assert order == [3, 1, 3, 2, 3, 1]
    # One level, the three alternate.
    assert served({1: [1.0] * 10, 2: [1.0] * 10, 3: [1.0] * 10}, {}, count=6) == [1, 2, 3, 1, 2, 3]


def test_a_member_who_runs_out_leaves_the_group_taking_turns_for_the_others():
    teams = {1: group_team(7, 0.0, 0.0, 1.0), 2: group_team(7, 0.0, 0.0, 1.0)}
    order = served({1: [1.0], 2: [1.0] * 3, 3: [1.0] * 3}, {}, teams)
    assert order == [3, 1, 3, 2, 3, 2, 2]


def test_users_in_no_group_take_turns_exactly_as_with_one_level():
    rnd = random.Random(19)
    for _ in range(200):
        users = rnd.sample(range(1, 40), rnd.randint(1, 8))
        usage = {uid: rnd.choice([0.0, 1.0, 2.5, 10.0, rnd.random() * 20]) for uid in users}
        rates = {uid: [rnd.choice([1.0, 2.0, 9.0]) for _ in range(rnd.randint(1, 6))] for uid in users}
        teams = {uid: lone(uid, usage[uid]) for uid in users}  # each a team of one, spelled out
        assert served(rates, usage, teams) == served(rates, usage)
        assert priority_order(usage, teams) == priority_order(usage)


def test_turns_left_without_again_or_leave_settle_as_given_nothing():
    teams = {1: group_team(7, 0.0, 0.0, 1.0), 2: group_team(7, 0.0, 0.0, 1.0)}
    turns = Turns({1: 0.0, 2: 1.0, 3: 0.5}, teams)
    assert turns.next()[0] == 1  # group 7 (0.0) before user 3 (0.5); in it, user 1
    # User 1 is capped (no `again`): group 7 stays in the turns, uncharged, for user 2.
    assert turns.next()[0] == 2
    assert turns.next()[0] == 3
    assert len(turns) == 0


def test_the_planner_fills_one_slot_nodes_as_the_group_shares_say():
    nodes = [FreeNode(f"n{i}", 1, 4096, 1, 4096) for i in range(8)]
    queues = {uid: [QueuedJob(uid * 100 + k, uid) for k in range(8)] for uid in (1, 2, 3)}
    # Users 1 and 2 in group 7 (share 3), user 3 in group 8 (share 1).
    teams = {1: group_team(7, 0.0, 0.0, 3.0), 2: group_team(7, 0.0, 0.0, 3.0), 3: group_team(8, 0.0, 0.0, 1.0)}
    picks = pick_assignments(queues, nodes, {}, teams=teams)
    owners = [a.job_id // 100 for a in picks.assignments]
    assert len(owners) == 8
    assert owners.count(3) == 2 and owners.count(1) == 3 and owners.count(2) == 3
