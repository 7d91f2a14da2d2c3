"""GPU time not wasted: the means, the idle rule and the sentences (dctoolkit/jobs/gpuuse.py), without a GPU."""

from datetime import UTC, datetime, timedelta

from dctoolkit.jobs.gpuuse import (
    GpuTally,
    IdleHolder,
    IdleRule,
    JobSample,
    fold,
    idle_holders_note,
    idle_line,
    is_idle,
    job_percent,
    recent_mean,
    spell,
    utilization,
)
from dctoolkit.jobs.scheduling.reasons import NodeView, Request, WaitFacts, explain_wait

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RULE = IdleRule(percent=5.0, after_seconds=1800.0)


def run(percents: list[float], every: float = 60.0, tally: GpuTally | None = None) -> GpuTally:
    """Fold one sample a minute (by default) from T0."""
    tally = tally or GpuTally()
    for k, p in enumerate(percents):
        tally = fold(
            tally, JobSample(p, None, fresh=k == 0 and tally.samples == 0), T0 + timedelta(seconds=k * every), RULE
        )
    return tally


def test_a_job_percent_is_the_mean_of_its_gpus_and_none_unless_all_were_read():
    assert job_percent({0: 0.0, 1: 80.0, 2: 50.0}, [0, 1]) == 40.0
    assert job_percent({0: 120.0}, [0]) == 100.0, "NVML never says more than 100; a bad file is clamped"
    assert job_percent({0: 10.0}, [0, 1]) is None
    assert job_percent({0: 10.0}, []) is None


def test_the_recent_mean_keeps_only_the_last_ten_minutes():
    samples = [(0.0, 100.0), (300.0, 0.0), (700.0, 10.0)]
    assert recent_mean(samples, 700.0) == 5.0
    assert recent_mean(samples, 2000.0) is None


def test_fold_sums_samples_for_the_mean_and_marks_when_they_went_under_the_threshold():
    tally = run([80.0, 2.0, 0.0, 4.0])
    assert (tally.samples, tally.mean) == (4, 21.5)
    assert tally.idle_since == T0 + timedelta(minutes=1)
    assert tally.idle_seconds == 120.0
    assert run([0.0, 0.0, 6.0]).idle_since is None, "one sample at the threshold or above ends the idle spell"


def test_a_fresh_sample_drops_what_an_earlier_attempt_left():
    earlier = run([90.0, 90.0])
    again = fold(earlier, JobSample(0.0, 0.0, fresh=True), T0 + timedelta(hours=1), RULE)
    assert (again.samples, again.mean, again.idle_since) == (1, 0.0, T0 + timedelta(hours=1))


def test_idle_takes_the_whole_rule_time_under_the_threshold():
    assert not is_idle(run([0.0] * 30), RULE), "29 minutes"
    assert is_idle(run([0.0] * 31), RULE)
    assert not is_idle(run([0.0] * 40 + [50.0]), RULE)


def test_the_idle_line_says_what_the_gpus_cost_an_hour():
    tally = run([0.0] * 46, tally=GpuTally())
    tally = GpuTally(tally.total, tally.samples, 0.0, tally.idle_since, tally.sampled_at)
    assert idle_line(812, 2, tally, RULE, gpu_weight=8) == (
        "job 812 holds 2 GPUs at 0% for 45 min; that costs 16 GPU-units an hour"
    )
    assert idle_line(812, 1, tally, RULE, gpu_weight=8, ended=True) == (
        "job 812 held 1 GPU at 0% for 45 min; that cost 8 GPU-units an hour"
    )
    assert idle_line(812, 1, tally, RULE, gpu_weight=0) == (
        "job 812 holds 1 GPU at 0% for 45 min; no one else can use it meanwhile"
    )
    mixed = GpuTally(tally.total, tally.samples, 30.0, tally.idle_since, tally.sampled_at)
    assert idle_line(7, 2, mixed, RULE, 8).startswith("job 7 holds 2 GPUs at under 5% for 45 min"), (
        "a ten-minute mean above the threshold is not shown as the idle level"
    )


def test_spells_are_seconds_minutes_then_hours():
    assert [spell(12.7), spell(60), spell(45 * 60 + 59), spell(7200 + 5 * 60)] == [
        "12 s",
        "1 min",
        "45 min",
        "2 h 05 min",
    ]


def test_the_job_object_shape_is_null_without_gpus_and_names_the_idle_line():
    assert utilization(1, 0, GpuTally(), RULE, 8, ended=False) is None
    assert utilization(1, 1, GpuTally(), RULE, 8, ended=False) == {
        "mean": None, "last_10_minutes": None, "samples": 0, "idle_seconds": 0.0, "idle": None,
    }  # fmt: skip
    busy = run([80.0, 80.0])
    assert utilization(1, 1, busy, RULE, 8, ended=False) == {
        "mean": 80.0, "last_10_minutes": 80.0, "samples": 2, "idle_seconds": 0.0, "idle": None,
    }  # fmt: skip
    idle = utilization(3, 1, run([0.0] * 31), RULE, 8, ended=False)
    assert idle is not None and idle["idle"] == "job 3 holds 1 GPU at 0% for 30 min; that costs 8 GPU-units an hour"


def test_the_note_names_holders_on_the_given_nodes_only_and_at_most_three():
    holders = [IdleHolder("node-1", f"job {i} holds 1 GPU at 0% for 31 min") for i in range(1, 6)]
    holders.append(IdleHolder("node-2", "job 9 holds 1 GPU at 0% for 31 min"))
    assert idle_holders_note(holders, ["node-3"]) == ""
    assert idle_holders_note(holders, ["node-2"]) == "; GPUs held idle: job 9 holds 1 GPU at 0% for 31 min on node-2"
    assert idle_holders_note(holders, ["node-1"]).endswith("job 3 holds 1 GPU at 0% for 31 min on node-1 and 2 more")


def gpu_node(name: str, free_gpus: int, free_cpus: int = 4) -> NodeView:
    return NodeView(name, True, True, 4, 8192, 2, free_cpus, 8192, free_gpus,
                    free_gpu_indices=tuple(range(free_gpus)))  # fmt: skip


def test_a_waiting_gpu_job_names_idle_holders_only_when_gpus_are_what_it_waits_for():
    holder = IdleHolder("node-1", "job 812 holds 2 GPUs at 0% for 45 min")
    wants_gpu = Request("queued", 1, 256, 1)
    full = WaitFacts(nodes=(gpu_node("node-1", 0),), idle_gpus=(holder,))
    assert explain_wait(wants_gpu, full) == (
        "needs 1 GPUs, node-1 has 0 free; GPUs held idle: job 812 holds 2 GPUs at 0% for 45 min on node-1"
    )
    assert "idle" not in explain_wait(Request("queued", 1, 256, 0), WaitFacts(nodes=(gpu_node("node-1", 0, 0),),
                                                                             idle_gpus=(holder,)))  # fmt: skip
    other_node = WaitFacts(nodes=(gpu_node("node-2", 0),), idle_gpus=(holder,))
    assert "idle" not in explain_wait(wants_gpu, other_node)
    free = WaitFacts(nodes=(gpu_node("node-1", 1),), idle_gpus=(holder,))
    assert explain_wait(wants_gpu, free) == "starting: a node has room"
