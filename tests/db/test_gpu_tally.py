"""GPU utilisation folded into job rows against the test database (jobs/gputally.py): one UPDATE for all the
node's GPU jobs, only rows still running the sampled attempt, and the idle holders the reasons name."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.jobs import gputally, notify
from dctoolkit.jobs.gpuuse import JobSample
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.web.serializers import job_dict
from dctoolkit.nodes.models import Node

from .conftest import online_node


def gpu_job(owner, node, indices: list[int], state: str = JobState.RUNNING, attempts: int = 1) -> Job:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    now = timezone.now()
    return Job.objects.create(submission=sub, owner=owner, name="g", executable="g.sh", request_gpus=len(indices),
                              gpu_indices=indices, node=node, state=state, attempts=attempts, submitted_at=now,
                              started_at=now)  # fmt: skip


def test_one_update_folds_every_gpu_job_of_the_node(db, alice, settings):
    settings.DCT_GPU_IDLE_PERCENT, settings.DCT_GPU_IDLE_SECONDS = 5.0, 60.0
    settings.DCT_BILLING = "cpu=1"  # GPUs cost nothing: the line says what idle GPUs cost others instead
    node = online_node()
    idle, busy = gpu_job(alice, node, [0]), gpu_job(alice, node, [1, 2])
    other = gpu_job(alice, online_node("node-2"), [0])
    held = gputally.running_gpu_jobs("node-1")
    assert sorted((h.job_id, h.indices) for h in held) == [(idle.id, (0,)), (busy.id, (1, 2))]
    t0 = timezone.now()
    for k in range(3):
        samples = {idle.id: JobSample(0.0, 0.0, fresh=k == 0), busy.id: JobSample(80.0, 80.0, fresh=k == 0)}
        with CaptureQueriesContext(connection) as queries:
            assert (
                gputally.record_samples(gputally.running_gpu_jobs("node-1"), samples, t0 + timedelta(seconds=40 * k))
                == 2
            )
        assert len(queries) == 2, "one read of the node's GPU jobs, one UPDATE for all of them"
    idle.refresh_from_db()
    busy.refresh_from_db()
    other.refresh_from_db()
    assert (idle.gpu_util_samples, idle.gpu_util_total, idle.gpu_idle_since) == (3, 0.0, t0)
    assert (busy.gpu_util_samples, busy.gpu_util_total, busy.gpu_idle_since) == (3, 240.0, None)
    assert other.gpu_util_samples == 0
    shape = job_dict(idle, timezone.now())["gpu_utilization"]
    assert shape["mean"] == 0.0 and shape["idle_seconds"] == 80.0
    assert shape["idle"] == f"job {idle.id} holds 1 GPU at 0% for 1 min; no one else can use it meanwhile"
    assert job_dict(busy, timezone.now())["gpu_utilization"]["idle"] is None
    assert [h.phrase for h in gputally.idle_holders()] == [f"job {idle.id} holds 1 GPU at 0% for 1 min"]


def test_a_row_that_moved_on_to_another_attempt_or_ended_is_left_alone(db, alice):
    node = online_node()
    job = gpu_job(alice, node, [0])
    held = gputally.running_gpu_jobs("node-1")
    Job.objects.filter(id=job.id).update(attempts=2)  # requeued and started again between the read and the write
    assert gputally.record_samples(held, {job.id: JobSample(50.0)}, timezone.now()) == 1
    job.refresh_from_db()
    assert job.gpu_util_samples == 0, "the CASE matched no (id, attempt): the row kept what it had"
    Job.objects.filter(id=job.id).update(state=JobState.SUCCEEDED)
    assert gputally.record_samples(held, {job.id: JobSample(50.0)}, timezone.now()) == 0


def test_a_job_holding_no_gpus_has_null_gpu_utilization(db, alice):
    job = gpu_job(alice, online_node(), [])
    Job.objects.filter(id=job.id).update(request_gpus=0)
    job.refresh_from_db()
    assert job_dict(job, timezone.now())["gpu_utilization"] is None


def test_the_end_of_job_mail_carries_the_idle_line(db, alice, settings):
    settings.DCT_BILLING = "cpu=1,gpu=8"
    settings.DCT_GPU_IDLE_PERCENT, settings.DCT_GPU_IDLE_SECONDS = 5.0, 1800.0
    job = gpu_job(alice, online_node(), [0, 1], state=JobState.SUCCEEDED)
    t0 = timezone.now()
    Job.objects.filter(id=job.id).update(gpu_util_total=0.0, gpu_util_samples=100, gpu_util_recent=0.0,
                                         gpu_idle_since=t0, gpu_util_at=t0 + timedelta(minutes=45))  # fmt: skip
    job.refresh_from_db()
    text = notify.body(job)
    assert "GPU use:     0% on average over the run\n" in text
    assert f"job {job.id} held 2 GPUs at 0% for 45 min; that cost 16 GPU-units an hour\n" in text
    Job.objects.filter(id=job.id).update(gpu_util_at=t0 + timedelta(minutes=29))
    job.refresh_from_db()
    assert "held 2 GPUs" not in notify.body(job), "29 minutes under the threshold is not idle by the rule"


def test_a_requeued_job_shows_no_figures_of_its_earlier_run(db, alice, settings):
    settings.DCT_GPU_IDLE_PERCENT, settings.DCT_GPU_IDLE_SECONDS = 5.0, 60.0
    job = gpu_job(alice, online_node(), [0])
    t0 = timezone.now()
    Job.objects.filter(id=job.id).update(gpu_util_total=0.0, gpu_util_samples=10, gpu_util_recent=0.0,
                                         gpu_idle_since=t0, gpu_util_at=t0 + timedelta(minutes=5))  # fmt: skip
    job.refresh_from_db()
    assert job_dict(job, timezone.now())["gpu_utilization"]["idle"] is not None
    Job.objects.filter(id=job.id).update(state=JobState.QUEUED, started_at=None, node=None)
    job.refresh_from_db()
    assert job_dict(job, timezone.now())["gpu_utilization"] == {
        "mean": None, "last_10_minutes": None, "samples": 0, "idle_seconds": 0.0, "idle": None,
    }  # fmt: skip
    Job.objects.filter(id=job.id).update(state=JobState.RUNNING, started_at=t0 + timedelta(minutes=6),
                                         node=Node.objects.get(name="node-1"))  # fmt: skip
    job.refresh_from_db()
    assert job_dict(job, timezone.now())["gpu_utilization"]["samples"] == 0, "running again, not sampled yet"
    held = gputally.running_gpu_jobs("node-1")
    later = t0 + timedelta(minutes=7)
    assert gputally.record_samples(held, {job.id: JobSample(70.0, 70.0, fresh=False)}, later) == 1
    job.refresh_from_db()
    assert (job.gpu_util_samples, job.gpu_util_total, job.gpu_idle_since) == (1, 70.0, None), (
        "the earlier run's samples are dropped even when the node did not say fresh"
    )
