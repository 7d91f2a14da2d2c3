"""Fair-share order and matchmaking: pure functions, no services."""

from dctoolkit.jobs.scheduler import FreeNode, QueuedJob, pick_assignments


def node(name="node-1", cpus=1, memory=4096, gpus=0, containers=()):
    return FreeNode(name, cpus, memory, cpus, memory, list(range(gpus)), gpus, tuple(containers))


def jobs(owner, ids, **kw):
    return [QueuedJob(i, owner, **kw) for i in ids]


def test_one_slot_goes_to_the_user_with_lowest_usage():
    queues = {1: jobs(1, [1, 2, 3]), 2: jobs(2, [10])}
    picked = pick_assignments(queues, [node()], {1: 50.0, 2: 0.0})
    assert [a.job_id for a in picked] == [10]


def test_equal_usage_alternates_between_users_within_a_pass():
    queues = {1: jobs(1, [1, 2, 3]), 2: jobs(2, [4, 5, 6])}
    picked = pick_assignments(queues, [node(cpus=4)], {})
    assert [a.job_id for a in picked] == [1, 4, 2, 5]


def test_one_users_jobs_keep_submission_order():
    queues = {1: jobs(1, [7, 8, 9])}
    picked = pick_assignments(queues, [node(cpus=2)], {})
    assert [a.job_id for a in picked] == [7, 8]


def test_nothing_is_placed_when_every_node_is_busy():
    busy = node(cpus=2)
    busy.free_cpus = 0
    assert pick_assignments({1: jobs(1, [1])}, [busy], {}) == []


def test_pinned_job_waits_for_its_node():
    queues = {1: [QueuedJob(1, 1, node="node-2")]}
    n1, n2 = node("node-1"), node("node-2")
    n2.free_cpus = 0
    assert pick_assignments(queues, [n1, n2], {}) == []
    n2.free_cpus = 1
    assert [(a.job_id, a.node) for a in pick_assignments(queues, [n1, n2], {})] == [(1, "node-2")]


def test_a_four_slot_node_runs_four_one_cpu_jobs_or_one_four_cpu_job():
    assert len(pick_assignments({1: jobs(1, range(1, 9))}, [node(cpus=4)], {})) == 4
    big = {1: [QueuedJob(1, 1, cpus=4), QueuedJob(2, 1, cpus=1)]}
    assert [a.job_id for a in pick_assignments(big, [node(cpus=4)], {})] == [1]


def test_memory_and_gpus_are_matched_and_gpus_allocated_by_index():
    queues = {1: [QueuedJob(1, 1, gpus=2), QueuedJob(2, 1, gpus=1), QueuedJob(3, 1, gpus=1)]}
    picked = pick_assignments(queues, [node(cpus=8, gpus=3)], {})
    assert [(a.job_id, a.gpu_indices) for a in picked] == [(1, (0, 1)), (2, (2,))]
    mem = {1: [QueuedJob(1, 1, memory_mb=5000)]}
    assert pick_assignments(mem, [node(memory=4096)], {}) == []


def test_best_fit_keeps_the_big_hole_for_big_jobs():
    queues = {1: [QueuedJob(1, 1, cpus=1)], 2: [QueuedJob(2, 2, cpus=4)]}
    small, large = node("small", cpus=2), node("large", cpus=4)
    picked = pick_assignments(queues, [small, large], {1: 0.0, 2: 1.0})
    assert sorted((a.job_id, a.node) for a in picked) == [(1, "small"), (2, "large")]


def test_a_blocked_big_job_reserves_a_node_so_small_ones_cannot_starve_it():
    # user 1 (lowest usage) wants 2 cpus; the only node has 1 free of 2.
    n = node(cpus=2)
    n.free_cpus = 1
    queues = {1: [QueuedJob(1, 1, cpus=2)], 2: jobs(2, [5, 6])}
    assert pick_assignments(queues, [n], {1: 0.0, 2: 10.0}) == []


def test_containers_only_where_offered():
    queues = {1: [QueuedJob(1, 1, container="/srv/deb")]}
    picked = pick_assignments(queues, [node("plain"), node("box", containers=["/srv/deb"])], {})
    assert [a.node for a in picked] == ["box"]


class IndexOnly:
    """A queue that, like dispatch.LazyQueue, can be indexed but not measured; it records what was read."""

    def __init__(self, items):
        self.items = items
        self.read = []

    def __getitem__(self, index):
        self.read.append(index)
        return self.items[index]


def test_lazily_read_queues_give_the_same_picks_and_are_read_one_past_the_last_placed():
    lists = {1: jobs(1, [1, 2, 3, 4, 5]), 2: jobs(2, [6, 7])}
    lazy = {uid: IndexOnly(items) for uid, items in lists.items()}
    expected = pick_assignments(lists, [node(cpus=3)], {})
    assert pick_assignments(lazy, [node(cpus=3)], {}) == expected
    assert [a.job_id for a in expected] == [1, 6, 2]
    assert max(lazy[1].read) == 2 and max(lazy[2].read) == 1
