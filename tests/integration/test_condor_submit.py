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


AGAIN = """\
import os, sys
print("attempt", os.environ["DCT_ATTEMPT"])
sys.exit(1 if os.environ["DCT_ATTEMPT"] == "1" else 0)
"""

# OSG's idiom for "run a failed job again", the release without its minute's wait.
HELD_AND_RELEASED = """\
executable       = again.py
output           = again.out
log              = again.log
on_exit_hold     = ExitCode != 0
periodic_release = NumJobStarts < 3
queue
"""


def test_on_exit_hold_and_periodic_release_run_a_failed_job_again_until_it_succeeds(cluster, tmp_path):
    (job,) = cluster.submit(tmp_path, HELD_AND_RELEASED, {"again.py": AGAIN}, name="again.sub")
    done = cluster.wait_job(job["id"])
    assert (done["state"], done["attempts"], done["exit_code"]) == ("succeeded", 2, 0), done
    history = [(a["attempt"], a["state"], a["exit_code"], a["reason"]) for a in done["attempt_history"]]
    assert history == [
        (1, "held", 1, "held by on_exit_hold = ExitCode != 0"),
        (2, "succeeded", 0, ""),
    ], history
    cluster.cli("results", str(job["id"]), cwd=tmp_path)
    task = tmp_path / f"TASK{job['id']}"
    assert (task / "again.out").read_text() == "attempt 2\n", "the second run's output comes back"
    # The event log says it as HTCondor's would: executing, held by policy (code 3), released, executing, ended.
    events = list(htcondor2.JobEventLog(str(task / "again.log")).events(stop_after=0))
    assert [int(e.type) for e in events] == [0, 1, 12, 13, 1, 5], [str(e) for e in events]
    assert events[2]["HoldReasonCode"] == 3 and events[2]["HoldReason"] == "held by on_exit_hold = ExitCode != 0"


REMAPPED = """\
executable             = make.py
output                 = out.txt
transfer_output_remaps = "out.txt = logs/out.txt; r.csv = results/r_$(Process).csv"
queue
"""


def test_transfer_output_remaps_bring_outputs_and_stdout_back_under_their_new_names(cluster, tmp_path):
    files = {"make.py": "open('r.csv', 'w').write('1,2\\n')\nopen('other.txt', 'w').write('x')\nprint('done')\n"}
    (job,) = cluster.submit(tmp_path, REMAPPED, files, name="remap.sub")
    done = cluster.wait_job(job["id"])
    assert done["state"] == "succeeded", done
    cluster.cli("results", str(job["id"]), cwd=tmp_path)
    task = tmp_path / f"TASK{job['id']}"
    found = sorted(str(p.relative_to(task)) for p in task.rglob("*") if p.is_file())
    assert found == ["logs/out.txt", "other.txt", "results/r_0.csv", "stderr"], found
    assert (task / "results" / "r_0.csv").read_text() == "1,2\n"
    assert (task / "logs" / "out.txt").read_text() == "done\n"
