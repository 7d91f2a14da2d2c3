from datetime import UTC, datetime, timedelta

import pytest

from dctoolkit.accounts.fairshare import (
    PLACED_CHARGE_SECONDS,
    Turns,
    UserUsage,
    ahead_limit,
    charge,
    decayed,
    effective_usage,
    priority_order,
    running_charge,
    serve_order,
    served_before,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86400.0


def test_usage_halves_every_half_life():
    assert decayed(100.0, T0, T0 + timedelta(days=1), DAY) == pytest.approx(50.0)
    assert decayed(100.0, T0, T0 + timedelta(days=2), DAY) == pytest.approx(25.0)


def test_charge_adds_to_the_decayed_balance():
    assert charge(100.0, T0, T0 + timedelta(days=1), DAY, 10.0) == pytest.approx(60.0)
    assert charge(0.0, None, T0, DAY, 4 * 30.0) == 120.0


def test_running_jobs_count_cpus_times_elapsed_and_a_dispatched_one_what_its_pass_charged():
    now = T0 + timedelta(seconds=10)
    assert running_charge([(2, T0), (1, T0 + timedelta(seconds=5)), (4, None)], now) == 25.0 + 4 * PLACED_CHARGE_SECONDS
    # Just started: still what the pass charged, so the charge never drops while a job is active.
    assert running_charge([(3, now)], now) == 3 * PLACED_CHARGE_SECONDS


def test_share_scales_usage_and_lowest_goes_first():
    usages = {1: UserUsage(1, 100.0, 0.0, share=2.0), 2: UserUsage(2, 60.0, 0.0), 3: UserUsage(3, 0.0, 10.0)}
    assert [u.effective for u in usages.values()] == [50.0, 60.0, 10.0]
    assert effective_usage(100.0, 20.0, 4.0) == 30.0
    assert priority_order({uid: u.effective for uid, u in usages.items()}) == [3, 1, 2]


def test_equal_usage_goes_to_the_lower_user_id_whatever_the_order_given():
    assert priority_order({9: 5.0, 3: 5.0, 7: 1.0, 4: 5.0}) == [7, 3, 4, 9]


def test_turns_charge_each_job_given_so_equal_users_alternate():
    turns = Turns({2: 0.0, 1: 0.0})
    seen = []
    for _ in range(4):
        uid, charged = turns.next()
        seen.append(uid)
        turns.again(uid, charged, rate=1)
    assert seen == [1, 2, 1, 2]


def test_serve_order_takes_turns_by_charge_and_keeps_each_users_submission_order():
    # user 2 has 3 cpu-seconds more: user 1 is served 3 one-cpu jobs first, then a tie goes to user 1.
    served = serve_order({1: [1, 1, 1, 1, 1], 2: [1, 1]}, {1: 0.0, 2: 3.0})
    assert served.order == [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (1, 4), (2, 1)]
    assert served.wants_more == frozenset()
    # A 4-cpu job charges 4: the other user is served four times before the next turn.
    assert serve_order({1: [4, 1], 2: [1] * 5}, {}).order[:6] == [(1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (1, 1)]


def test_serve_order_stops_and_asks_when_a_users_known_jobs_run_out_while_they_have_more():
    served = serve_order({1: [1], 2: [1, 1, 1]}, {}, more={1})
    assert served.order == [(1, 0)] and served.wants_more == frozenset({1})
    assert serve_order({1: [1, 1], 2: [1, 1]}, {}, more={1, 2}, count=3).order == [(1, 0), (2, 0), (1, 1)]


def test_served_before_counts_another_users_jobs_ahead_of_a_turn_with_the_same_tie_break():
    # Another user (id 5, usage 0, four 1-cpu jobs) against user 7's turn at usage 2: keys 0, 1 come first; 2 ties
    # (5 < 7, so it is first too); 3 does not.
    assert served_before(2.0, 7, 0.0, 5, [1, 1, 1, 1]) == 3
    assert served_before(2.0, 3, 0.0, 5, [1, 1, 1, 1]) == 2
    assert served_before(2.0, 3, 0.0, 5, [2, 1]) == 1
    # ahead_limit jobs of theirs are always enough to count.
    assert ahead_limit(2.0, 0.0) >= 3 and ahead_limit(1.0, 5.0) == 0


def test_served_before_agrees_with_serve_order():
    cpus = {1: [1, 2, 1, 3, 1], 2: [2, 1, 1], 3: [1, 1, 1, 1]}
    usage = {1: 1.0, 2: 0.0, 3: 2.5}
    order = serve_order(cpus, usage).order
    for position, (uid, index) in enumerate(order):
        standing = usage[uid] + sum(cpus[uid][:index]) * PLACED_CHARGE_SECONDS
        others = sum(served_before(standing, uid, usage[v], v, cpus[v]) for v in cpus if v != uid)
        assert others + index == position, (uid, index)
