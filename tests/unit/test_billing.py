"""Weighted billing (DCT_BILLING): what a job costs a second in fair share, the one rule's arithmetic, the
planner's turns (the system check for bad values: test_checks).  Pure functions and Django's settings, no services."""

import pytest

from dctoolkit.accounts.fairshare import CPU_ONLY, Billing, BillingError, ahead_limit, parse_billing, serve_order
from dctoolkit.jobs.scheduling.policy import FreeNode, QueuedJob, pick_assignments

LAB = Billing(cpu=1, gpu=8, mem_gb=0.25)


def test_the_contracts_example_costs_9_a_second_for_one_cpu_and_one_gpu():
    assert parse_billing("cpu=1,gpu=8,mem_gb=0.25") == LAB
    assert LAB.rate(1, 1) == 9.0
    assert LAB.rate(2, 0, 4096) == 3.0  # 2 cpus + 4 GB x 0.25
    assert CPU_ONLY.rate(4, 2, 8192) == 4.0, "the default charges cpus only"


@pytest.mark.parametrize(
    ("text", "billing"),
    [
        ("cpu=1", CPU_ONLY),
        ("gpu=8", Billing(cpu=1, gpu=8)),  # cpu keeps its weight of 1 unless given
        (" CPU = 2 , mem_gb=0.5 ,", Billing(cpu=2, mem_gb=0.5)),
    ],
)
def test_billing_reads_names_and_weights(text, billing):
    assert parse_billing(text) == billing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpu=1,tpu=4", "'tpu=4' is not NAME=WEIGHT of cpu, gpu or mem_gb; write it as cpu=1,gpu=8,mem_gb=0.25"),
        ("gpu", "'gpu' is not NAME=WEIGHT of cpu, gpu or mem_gb; write it as cpu=1,gpu=8,mem_gb=0.25"),
        ("gpu=lots", "gpu=lots: a weight is a number from 0 up, such as gpu=1"),
        ("gpu=-1", "gpu=-1: a weight is a number from 0 up, such as gpu=1"),
        ("gpu=nan", "gpu=nan: a weight is a number from 0 up, such as gpu=1"),
        ("cpu=0,gpu=1", "cpu must weigh more than 0 (every job holds a cpu; fair share counts on it)"),
    ],
)
def test_a_bad_billing_is_refused_saying_what_to_write(text, message):
    with pytest.raises(BillingError) as info:
        parse_billing(text)
    assert str(info.value) == message


def test_a_gpu_job_charges_its_owner_more_so_the_other_user_gets_more_turns():
    # alice's jobs hold a GPU each (9 a second), bob's none (1): from equal usage bob is served 9 times
    # for each of alice's turns, where cpu-only billing alternates them.
    rates = {1: [LAB.rate(1, 1)] * 3, 2: [LAB.rate(1, 0)] * 20}
    order = [uid for uid, _ in serve_order(rates, {}).order]
    assert order[:11] == [1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1]
    cpu_only = {1: [1.0] * 3, 2: [1.0] * 20}
    assert [uid for uid, _ in serve_order(cpu_only, {}).order][:4] == [1, 2, 1, 2]


def test_the_planner_charges_each_placed_job_by_the_billing_it_is_given():
    gpu_jobs = [QueuedJob(i, 1, gpus=1) for i in (1, 2)]
    cpu_jobs = [QueuedJob(i, 2) for i in (3, 4, 5)]
    node = FreeNode("node-1", 8, 8192, 4, 8192, free_gpus=[0, 1], total_gpus=2)
    picks = pick_assignments({1: gpu_jobs, 2: cpu_jobs}, [node], {}, billing=LAB)
    assert [a.job_id for a in picks.assignments] == [1, 3, 4, 5]
    picks = pick_assignments({1: gpu_jobs, 2: cpu_jobs}, [node], {})
    assert [a.job_id for a in picks.assignments] == [1, 3, 2, 4]


def test_ahead_limit_counts_on_the_cheapest_job_the_billing_allows():
    assert ahead_limit(10.0, 0.0, least=0.5) >= ahead_limit(10.0, 0.0) * 2 - 2
