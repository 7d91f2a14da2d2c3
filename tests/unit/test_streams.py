"""The names HTCondor's input/output/error/log/initialdir give a job's files, kept in the job's row."""

from types import SimpleNamespace

from dctoolkit.jobs import streams
from dctoolkit.jobs.streams import JOB_ID_MARKER


def test_only_the_names_a_submission_gave_are_kept_and_read_back():
    assert streams.to_field(streams.DEFAULT) == {}
    named = streams.Streams(
        stdin="in.0", stdout="run_1/out.0", stderr="stderr", log="run_1/job.log", initialdir="run_1"
    )
    field = streams.to_field(named)
    assert field == {"stdin": "in.0", "stdout": "run_1/out.0", "log": "run_1/job.log", "initialdir": "run_1"}
    assert streams.of(SimpleNamespace(pk=7, streams=field)) == named
    assert streams.of(SimpleNamespace(pk=7, streams={})) == streams.DEFAULT


def test_a_slurm_job_id_in_a_name_is_the_jobs_own_id():
    field = streams.to_field(streams.Streams(stdout=f"slurm-{JOB_ID_MARKER}.out"))
    assert streams.of(SimpleNamespace(pk=812, streams=field)).stdout == "slurm-812.out"


def test_a_damaged_field_means_the_defaults_for_what_is_damaged():
    damaged = {"stdout": 7, "stdin": "x", "bogus": "y", "stderr": ""}
    assert streams.of(SimpleNamespace(pk=1, streams=damaged)) == streams.Streams(stdin="x")
    assert streams.of(SimpleNamespace(pk=1, streams=[])) == streams.DEFAULT
