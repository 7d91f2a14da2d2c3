"""What the workflow tools' integrations ask dctoolkit for (dctoolkit.client.workflow): Snakemake's resources
as requests, the submission made of them, and dask-jobqueue's walltimes as `--time` takes them."""

import pytest

from dctoolkit.client.workflow import Requests, dct_time, safe_name, snakemake_requests
from dctoolkit.jobs.intake.parse import parse_submission


def test_snakemake_resources_map_onto_requests():
    resources = {"_cores": 4, "_nodes": 1, "mem_mb": 1500, "runtime": 90, "tmpdir": "/tmp", "disk_mb": 1000}
    assert snakemake_requests("smk.align", 4, resources) == Requests(
        cpus=4, memory_mb=1500, minutes=90.0, name="smk.align"
    )
    # cpus_per_task wins over threads; gpu and gpu_model (or gpus) ask for GPUs.
    gpu = snakemake_requests("smk.train", 2, {"cpus_per_task": 8, "gpu": 2, "gpu_model": "A100"})
    assert (gpu.cpus, gpu.gpus, gpu.gpu_type) == (8, 2, "A100")
    assert snakemake_requests("smk.x", 1, {"gpus": 1}).gpus == 1
    # A model without a count asks for nothing; a string or a zero is no request.
    none = snakemake_requests("smk.x", 0, {"gpu_model": "A100", "mem_mb": "<TBD>", "runtime": 0})
    assert (none.cpus, none.gpus, none.gpu_type, none.memory_mb, none.minutes) == (1, 0, None, None, None)


def test_the_submission_parses_and_asks_what_was_mapped():
    text = Requests(cpus=2, memory_mb=1500.4, gpus=1, gpu_type="T4", minutes=1.5, name="smk.a b").submission("job.sh")
    assert text.splitlines() == [
        "executable = job.sh", "request_cpus = 2", "request_memory = 1501MB", "request_gpus = 1", "gpu_type = T4",
        "max_runtime = 90s", "name = smk.a_b", "queue",
    ]  # fmt: skip
    (job,) = parse_submission(text, "tool").jobs
    assert (job.request_cpus, job.request_memory_mb, job.request_gpus, job.max_runtime_seconds) == (2, 1501, 1, 90)
    assert job.name == "smk.a_b"


@pytest.mark.parametrize(
    "walltime,expected",
    [("00:30:00", "1800s"), ("1-02:00:00", "93600s"), ("05:30", "330s"), ("2h", "2h"), (" 90m ", "90m")],
)
def test_walltimes_become_what_time_takes(walltime, expected):
    assert dct_time(walltime) == expected


def test_a_tools_job_name_keeps_only_safe_characters():
    assert safe_name("rule a/b:{x}") == "rule_a_b__x_"
    assert safe_name("") == "job"
