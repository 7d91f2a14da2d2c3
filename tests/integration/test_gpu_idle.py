"""GPU time not wasted, with a real node worker whose declared GPUs report a utilisation the test writes
(DCT_GPU_UTILIZATION_SOURCE): a job holding a GPU at 0% is called idle on its job object and named in a
waiting GPU job's reason; one at 80% is not.  The idle rule is cut to seconds (DCT_GPU_IDLE_AFTER)."""

import json
import re

import pytest

from tests.support.cluster import Cluster, wait_until
from tests.support.mail import body_of

pytestmark = pytest.mark.integration

HOLD = "#!/bin/sh\nsleep 120\n"
GPU_JOB = "executable = hold.sh\nrequest_gpus = 1\n"


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory, smtp):
    folder = tmp_path_factory.mktemp("gpu-idle")
    source = folder / "utilization.json"
    extra = {"DCT_GPU_IDLE_PERCENT": "5", "DCT_GPU_IDLE_AFTER": "3s", "DCT_BILLING": "cpu=1,gpu=8",
             "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp.port)}  # fmt: skip
    with Cluster(folder, extra_env=extra) as c:
        c.start_node("node-1", slots=3, env={"DCT_GPUS": "A100:40GB,A100:40GB",
                                             "DCT_GPU_UTILIZATION_SOURCE": str(source)})  # fmt: skip
        yield c, source


@pytest.mark.engine  # the heartbeat's one UPDATE of CASEs, on each engine
def test_an_idle_gpu_job_is_named_and_a_busy_one_is_not(gpu_cluster, smtp, tmp_path):
    c, source = gpu_cluster
    (idle,) = c.submit(tmp_path / "idle", GPU_JOB + "email = idle@lab.example\n", {"hold.sh": HOLD})
    (busy,) = c.submit(tmp_path / "busy", GPU_JOB, {"hold.sh": HOLD})
    idle, busy = c.wait_job(idle["id"], states=("running",)), c.wait_job(busy["id"], states=("running",))
    (idle_gpu,), (busy_gpu,) = idle["gpu_indices"], busy["gpu_indices"]
    source.write_text(json.dumps({str(idle_gpu): 0, str(busy_gpu): 80}))
    (waiting,) = c.submit(tmp_path / "waiting", GPU_JOB, {"hold.sh": HOLD})

    def idle_line():
        shape = c.job(idle["id"])["gpu_utilization"]
        return shape if shape["idle"] else None

    shape = wait_until(idle_line, 30, "the idle job to be called idle")
    assert shape["mean"] == 0.0 and shape["last_10_minutes"] == 0.0 and shape["idle_seconds"] >= 3, shape
    assert shape["idle"].startswith(f"job {idle['id']} holds 1 GPU at 0% for "), shape
    assert shape["idle"].endswith("; that costs 8 GPU-units an hour"), shape

    busy_shape = c.job(busy["id"])["gpu_utilization"]
    assert (busy_shape["mean"], busy_shape["last_10_minutes"], busy_shape["idle"]) == (80.0, 80.0, None), busy_shape
    assert busy_shape["samples"] >= 3

    reason = c.job(waiting["id"])["reason"]
    assert reason.startswith("needs 1 GPUs, node-1 has 0 free; GPUs held idle: "), reason
    assert f"job {idle['id']} holds 1 GPU at 0% for " in reason and reason.endswith(" on node-1"), reason
    assert f"job {busy['id']}" not in reason, reason

    # Busy again: no longer idle, and no longer named; then idle again.
    source.write_text(json.dumps({str(idle_gpu): 90, str(busy_gpu): 80}))
    wait_until(lambda: c.job(idle["id"])["gpu_utilization"]["idle"] is None, 30, "the job to be busy again")
    assert "held idle" not in c.job(waiting["id"])["reason"]
    source.write_text(json.dumps({str(idle_gpu): 0, str(busy_gpu): 80}))
    wait_until(idle_line, 30, "the job to be idle again")

    for job in (waiting, idle, busy):  # the waiting one first, or it starts on a GPU the others free
        c.cli("cancel", str(job["id"]))
    for job in (idle, busy, waiting):
        c.wait_job(job["id"], states=("cancelled",))
    # Its last ten minutes hold the 90% samples too, so the level is given as the threshold (with the
    # default 30 minutes, the ten-minute mean of an idle job is always its idle level).
    # (when the idle samples since far outnumber the busy ones, that mean is itself under 5%: "at 4%")
    ended = c.job(idle["id"])["gpu_utilization"]["idle"]
    level = re.match(rf"job {idle['id']} held 1 GPU at (under 5|[0-4])% for ", ended)
    assert level, ended
    assert ended.endswith("; that cost 8 GPU-units an hour"), ended
    (mail,) = wait_until(lambda: smtp.inbox.to("idle@lab.example"), 60, "the idle job's mail")
    text = body_of(mail)
    assert "GPU use:     " in text and f"\n{ended}\n" in text, text
    assert c.job(waiting["id"])["gpu_utilization"] == {
        "mean": None, "last_10_minutes": None, "samples": 0, "idle_seconds": 0.0, "idle": None,
    }, "a job that never ran has no samples"  # fmt: skip


def test_a_job_holding_no_gpus_has_null_gpu_utilization(gpu_cluster, tmp_path):
    c, _ = gpu_cluster
    (job,) = c.submit(tmp_path / "cpu", "executable = ok.sh\n", {"ok.sh": "#!/bin/sh\necho ok\n"})
    assert c.wait_job(job["id"])["gpu_utilization"] is None
