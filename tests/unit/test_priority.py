"""`priority = N` among a user's own jobs (Slurm --nice, PBS -p): the keys, and the planner trying a user's
jobs in the order it is given (higher priority first; the queues read them so).  Pure, no services."""

import pytest

from dctoolkit.jobs.intake.parse import SubmissionError, parse_submission


def parse(text, name="job.sub"):
    return parse_submission(text, name)


def test_priority_is_read_and_defaults_to_0():
    assert parse("executable = f.py\npriority = 10\n").jobs[0].priority == 10
    assert parse("executable = f.py\nPriority = -5\n").jobs[0].priority == -5
    assert parse("executable = f.py\n").jobs[0].priority == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("high", "job.sub:2: priority must be a whole number, got 'high'"),
        ("2000000", "job.sub:2: priority = 2000000 is out of range; use -1000000 to 1000000"),
    ],
)
def test_a_bad_priority_is_refused_at_its_line(value, message):
    with pytest.raises(SubmissionError) as info:
        parse(f"executable = f.py\npriority = {value}\n")
    assert str(info.value) == message


def test_slurms_nice_is_lower_first_and_pbs_p_higher_first():
    slurm = "#!/bin/bash\n#SBATCH --nice=10\necho hi\n"
    assert parse(slurm, "job.sh").jobs[0].priority == -10
    pbs = "#!/bin/sh\n#PBS -p 5\necho hi\n"
    assert parse(pbs, "job.pbs").jobs[0].priority == 5
    with pytest.raises(SubmissionError, match="--nice lots: give a whole number, such as --nice 10"):
        parse("#!/bin/bash\n#SBATCH --nice=lots\necho hi\n", "job.sh")
