"""Dependencies, pure: the after_* keys as written, and when a parent's end meets a wait."""

import pytest

from dctoolkit.jobs.intake.parse import DependencyRef, SubmissionError, parse_submission
from dctoolkit.jobs.scheduling.dependencies import Outcome, Parent, edge_outcome, never_reason, waiting_reason


def test_ids_ranges_and_batches_are_read_from_each_key_with_its_line():
    parsed = parse_submission("executable = a.sh\nafter_ok = 12, 14-16\nafter_any = batch:7 20\n")
    assert parsed.dependencies == (
        DependencyRef("after_ok", (12, 14, 15, 16), (), 2),
        DependencyRef("after_any", (20,), (7,), 3),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("after_ok = 12x", "job.txt:2: after_ok: '12x' is not a job id, a range (12-20) or batch:S (a submission)"),
        ("after_fail = 20-12", "job.txt:2: after_fail: the range 20-12 ends before it starts; write 12-20"),
        ("after_any = batch:", "job.txt:2: after_any: 'batch:' is not a job id, a range (12-20) or batch:S"),
        ("after_ok = 1-200000", "job.txt:2: after_ok names more than 100,000 jobs; name their batch (batch:S)"),
        ("after_okk = 3", "job.txt:2: unknown key 'after_okk' — did you mean 'after_ok'?"),
    ],
)
def test_a_bad_dependency_is_refused_at_its_line(line, message):
    with pytest.raises(SubmissionError) as refused:
        parse_submission(f"executable = a.sh\n{line}\n")
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    ("kind", "state", "outcome"),
    [
        ("after_ok", "succeeded", Outcome.MET),
        ("after_ok", "failed", Outcome.NEVER),
        ("after_ok", "cancelled", Outcome.NEVER),
        ("after_ok", "running", Outcome.PENDING),
        ("after_any", "failed", Outcome.MET),
        ("after_any", "queued", Outcome.PENDING),
        ("after_fail", "failed", Outcome.MET),
        ("after_fail", "cancelled", Outcome.MET),
        ("after_fail", "succeeded", Outcome.NEVER),
        ("after_fail", "waiting", Outcome.PENDING),
    ],
)
def test_a_parents_end_meets_or_forecloses_each_kind(kind, state, outcome):
    assert edge_outcome(kind, state) is outcome


def test_the_reasons_name_the_parent_its_state_and_where_it_runs():
    assert never_reason("after_ok", 12, "failed") == (
        "dependency never met: job 12 failed (after_ok: it waited for job 12 to succeed)"
    )
    running = Parent(12, "after_ok", "running", "node-2", 2400.0)
    assert waiting_reason([running]) == "waiting for job 12, running on node-2 for 40 min"
    queued = Parent(14, "after_any", "queued")
    assert waiting_reason([queued, running, running]) == "waiting for job 14 (after_any), queued, and 2 other jobs"
