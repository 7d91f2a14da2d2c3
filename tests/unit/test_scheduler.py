"""Fair-share order and matchmaking: pure functions, no services."""

from dctoolkit.jobs.scheduling.policy import FreeNode, QueuedJob, pick_assignments


def node(name="node-1", cpus=1, memory=4096, gpus=0, containers=()):
    return FreeNode(name, cpus, memory, cpus, memory, list(range(gpus)), gpus, tuple(containers))


def jobs(owner, ids, **kw):
    return [QueuedJob(i, owner, **kw) for i in ids]


def pick(queues, nodes, usage):
    """The assignments, for queues given whole (no user has more than is known)."""
    picks = pick_assignments(queues, nodes, usage)
    assert picks.wants_more == frozenset()
    return picks.assignments


def test_one_slot_goes_to_the_user_with_lowest_usage():
    queues = {1: jobs(1, [1, 2, 3]), 2: jobs(2, [10])}
    picked = pick(queues, [node()], {1: 50.0, 2: 0.0})
    assert [a.job_id for a in picked] == [10]


def test_equal_usage_alternates_between_users_within_a_pass():
    queues = {1: jobs(1, [1, 2, 3]), 2: jobs(2, [4, 5, 6])}
    picked = pick(queues, [node(cpus=4)], {})
    assert [a.job_id for a in picked] == [1, 4, 2, 5]


def test_one_users_jobs_keep_submission_order():
    queues = {1: jobs(1, [7, 8, 9])}
    picked = pick(queues, [node(cpus=2)], {})
    assert [a.job_id for a in picked] == [7, 8]


def test_nothing_is_placed_when_every_node_is_busy():
    busy = node(cpus=2)
    busy.free_cpus = 0
    assert pick({1: jobs(1, [1])}, [busy], {}) == []


def test_pinned_job_waits_for_its_node():
    queues = {1: [QueuedJob(1, 1, node="node-2")]}
    n1, n2 = node("node-1"), node("node-2")
    n2.free_cpus = 0
    assert pick(queues, [n1, n2], {}) == []
    n2.free_cpus = 1
    assert [(a.job_id, a.node) for a in pick(queues, [n1, n2], {})] == [(1, "node-2")]


def test_a_four_slot_node_runs_four_one_cpu_jobs_or_one_four_cpu_job():
    assert len(pick({1: jobs(1, range(1, 9))}, [node(cpus=4)], {})) == 4
    big = {1: [QueuedJob(1, 1, cpus=4), QueuedJob(2, 1, cpus=1)]}
    assert [a.job_id for a in pick(big, [node(cpus=4)], {})] == [1]


def test_memory_and_gpus_are_matched_and_gpus_allocated_by_index():
    queues = {1: [QueuedJob(1, 1, gpus=2), QueuedJob(2, 1, gpus=1), QueuedJob(3, 1, gpus=1)]}
    picked = pick(queues, [node(cpus=8, gpus=3)], {})
    assert [(a.job_id, a.gpu_indices) for a in picked] == [(1, (0, 1)), (2, (2,))]
    mem = {1: [QueuedJob(1, 1, memory_mb=5000)]}
    assert pick(mem, [node(memory=4096)], {}) == []


def test_best_fit_keeps_the_big_hole_for_big_jobs():
    queues = {1: [QueuedJob(1, 1, cpus=1)], 2: [QueuedJob(2, 2, cpus=4)]}
    small, large = node("small", cpus=2), node("large", cpus=4)
    picked = pick(queues, [small, large], {1: 0.0, 2: 1.0})
    assert sorted((a.job_id, a.node) for a in picked) == [(1, "small"), (2, "large")]


def test_a_blocked_big_job_reserves_a_node_so_small_ones_cannot_starve_it():
    # user 1 (lowest usage) wants 2 cpus; the only node has 1 free of 2.
    n = node(cpus=2)
    n.free_cpus = 1
    queues = {1: [QueuedJob(1, 1, cpus=2)], 2: jobs(2, [5, 6])}
    assert pick(queues, [n], {1: 0.0, 2: 10.0}) == []


def test_a_users_head_that_cannot_start_keeps_its_reservation_and_no_longer_blocks_their_jobs_that_fit():
    # The 4-cpu head fits node "big" only when it is empty; "big" is reserved for it.  The user's 1-cpu
    # jobs behind it start on "small"; nothing goes onto "big" meanwhile.
    big, small = node("big", cpus=4), node("small", cpus=2)
    big.free_cpus = 2
    queues = {1: [QueuedJob(1, 1, cpus=4), *jobs(1, [2, 3, 4])]}
    assert [(a.job_id, a.node) for a in pick(queues, [big, small], {})] == [(2, "small"), (3, "small")]


def test_a_user_whose_jobs_cannot_start_is_passed_over_at_most_so_many_jobs_a_pass():
    from dctoolkit.jobs.scheduling.policy import PASSED_OVER

    too_big = [QueuedJob(i, 1, cpus=8) for i in range(1, 100)]
    picks = pick_assignments({1: [*too_big, QueuedJob(100, 1)]}, [node(cpus=2)], {}, more={1})
    assert picks.assignments == [] and picks.wants_more == frozenset()
    short = {1: [*too_big[: PASSED_OVER - 1], QueuedJob(100, 1)]}
    assert [a.job_id for a in pick(short, [node(cpus=2)], {})] == [100]


def test_containers_only_where_offered():
    queues = {1: [QueuedJob(1, 1, container="/srv/deb")]}
    picked = pick(queues, [node("plain"), node("box", containers=["/srv/deb"])], {})
    assert [a.node for a in picked] == ["box"]


def pick_asking_for_more(full, nodes, usage, first):
    """The shell's loop (dispatch.pick_reading_more) over plain lists: start with `first` jobs of each user,
    give more of whoever the planner asks for (doubling), and ask again.  Returns the picks and how deep each
    user's queue was read."""
    known = {uid: list(q[:first]) for uid, q in full.items()}
    asked = []
    while True:
        more = {uid for uid in full if len(known[uid]) < len(full[uid])}
        picks = pick_assignments(known, nodes, usage, more)
        if not picks.wants_more:
            return picks.assignments, {uid: len(q) for uid, q in known.items()}, asked
        assert picks.assignments == []
        asked.append(set(picks.wants_more))
        for uid in picks.wants_more:
            known[uid] = list(full[uid][: 2 * len(known[uid])])


def test_running_out_of_a_users_known_jobs_asks_for_more_of_them_instead_of_guessing():
    known = {1: jobs(1, [1]), 2: jobs(2, [6])}
    picks = pick_assignments(known, [node(cpus=3)], {1: 0.0, 2: 5.0}, more={1})
    assert (picks.assignments, picks.wants_more) == ([], frozenset({1}))
    # A user known to have no more simply leaves the turns.
    assert [a.job_id for a in pick(known, [node(cpus=3)], {1: 0.0, 2: 5.0})] == [1, 6]


def test_no_more_is_asked_for_once_the_nodes_are_full():
    picks = pick_assignments({1: jobs(1, [1, 2])}, [node(cpus=2)], {}, more={1})
    assert ([a.job_id for a in picks.assignments], picks.wants_more) == ([1, 2], frozenset())


def test_reading_more_when_asked_gives_the_picks_of_the_whole_queues_reading_little_past_them():
    full = {1: jobs(1, range(1, 41)), 2: jobs(2, range(100, 104)), 3: jobs(3, range(200, 240))}
    usage = {1: 0.0, 2: 0.0, 3: 30.0}
    expected = pick(full, [node(cpus=12)], usage)
    picked, depth, asked = pick_asking_for_more(full, [node(cpus=12)], usage, first=2)
    assert picked == expected
    assert [a.job_id for a in expected][:4] == [1, 100, 2, 101]
    assert asked and all(len(users) == 1 for users in asked)
    assert depth[1] <= 16 and depth[3] == 2  # user 1 got 8 slots; user 3 (high usage) none


def test_the_planner_leaves_the_nodes_it_is_given_as_they_were():
    n = node(cpus=4, gpus=2)
    pick({1: [QueuedJob(1, 1, cpus=2, gpus=1)]}, [n], {})
    assert (n.free_cpus, n.free_gpus) == (4, [0, 1])
