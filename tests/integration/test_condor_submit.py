"""An HTCondor submit file, as a lab has it, runs unchanged: `queue ... from`, `output = out.$(Process)`,
new-syntax arguments, and keys HTCondor files carry that need nothing here."""

import htcondor2
import pytest

pytestmark = pytest.mark.integration

SHOW = """\
import sys
print(*sys.argv[1:], sep="|")
print("stdin:", sys.stdin.read().strip())
print("to stderr", file=sys.stderr)
"""

SUBMIT = """\
# A vanilla-universe sweep, written for condor_submit
universe                = vanilla
executable              = show.py
arguments               = "$(word) 'two words' $(Process)"
input                   = $(word).in
output                  = out.$(Process)
error                   = err.$(Cluster).$(Process)
log                     = sweep.log
should_transfer_files   = YES
when_to_transfer_output = ON_EXIT
request_disk            = 1GB
+ProjectName            = "lab"
queue word from words.txt
"""


def test_an_htcondor_file_with_queue_from_returns_each_jobs_stdout_under_its_output_name(cluster, tmp_path):
    files = {"show.py": SHOW, "words.txt": "alpha\nbeta\n", "alpha.in": "first\n", "beta.in": "second\n"}
    jobs = cluster.submit(tmp_path, SUBMIT, files, name="sweep.sub")
    assert len(jobs) == 2, jobs
    for process, (job, word, fed) in enumerate(zip(jobs, ("alpha", "beta"), ("first", "second"), strict=True)):
        done = cluster.wait_job(job["id"])
        assert done["state"] == "succeeded", done
        cluster.cli("results", str(job["id"]), cwd=tmp_path)
        task = tmp_path / f"TASK{job['id']}"
        assert (task / f"out.{process}").read_text() == f"{word}|two words|{process}\nstdin: {fed}\n"
        # $(Cluster) is the submission's id, the `submission` field of every job.
        assert (task / f"err.{job['submission']}.{process}").read_text() == "to stderr\n"
        assert not (task / "stdout").exists(), "stdout comes back under the name `output` gives it"
    # `log = sweep.log`: one event log for the submission, in HTCondor's format, read by HTCondor's reader.
    events = list(htcondor2.JobEventLog(str(task / "sweep.log")).events(stop_after=0))
    seen = sorted((e.proc, int(e.type)) for e in events)
    assert seen == [(0, 0), (0, 1), (0, 5), (1, 0), (1, 1), (1, 5)], seen
    assert {e.cluster for e in events} == {jobs[0]["submission"]}
    assert {e["ReturnValue"] for e in events if int(e.type) == 5} == {0}
