"""The planner's sorted open nodes (`policy.OpenNodes`) choose the node the full best-fit scan would choose."""

import random

from dctoolkit.jobs.scheduling.matching import Wants
from dctoolkit.jobs.scheduling.policy import FreeNode, OpenNodes, QueuedJob, best_fit


def random_nodes(rng: random.Random, count: int) -> list[FreeNode]:
    nodes = []
    for i in range(count):
        cpus, memory = rng.choice([1, 2, 4, 8]), rng.choice([1024, 2048, 4096, 8192])
        disk = rng.choice([None, 500, 5000])
        nodes.append(FreeNode(f"n{i:02d}", cpus, memory, cpus, memory, free_disk_mb=disk,
                              containers=("img",) if i % 3 == 0 else ()))  # fmt: skip
    return nodes


def random_job(rng: random.Random, job_id: int) -> QueuedJob:
    wants = Wants(disk_mb=rng.choice([0, 0, 1000])) if rng.random() < 0.3 else Wants()
    kind = rng.random()
    return QueuedJob(job_id, 1, cpus=rng.choice([1, 1, 2, 3, 8]), memory_mb=rng.choice([256, 1024, 3000, 9000]),
                     wants=wants, container="img" if kind < 0.1 else "",
                     node="n03" if 0.1 <= kind < 0.15 else "")  # fmt: skip


def test_sorted_nodes_choose_what_the_full_scan_chooses_as_the_nodes_fill():
    rng = random.Random(20)
    for round_ in range(200):
        nodes = random_nodes(rng, rng.randint(1, 12))
        reserved = rng.choice([None, *(n.name for n in nodes)])
        open_nodes = OpenNodes(nodes)
        for job_id in range(40):
            job = random_job(rng, job_id)
            still_open = [n for n in nodes if n.free_cpus > 0 and n.name != reserved]
            expected = best_fit(job, still_open)
            got = open_nodes.best_fit(job, reserved, None)
            assert got is expected, f"round {round_}, job {job}: {got} instead of {expected}"
            if got is not None:
                open_nodes.take(got, job)
        assert bool(open_nodes) == any(n.free_cpus > 0 for n in nodes)
