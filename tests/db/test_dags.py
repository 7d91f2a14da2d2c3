"""The DAG engine against the real database: nodes queued as their parents end, retries, abort, FINAL, rerun.

A job's end is written as a node would (state, exit code); the engine's step is called as the scheduler does.
"""

import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.jobs.intake.dagqueue import prepare_dag
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.intake.queue import FolderFiles
from dctoolkit.jobs.models import Dag, DagNode, Job, JobState
from dctoolkit.jobs.scheduling import dagman, dispatch, wake
from dctoolkit.jobs.web.dags import dag_payload

DATA = Path(__file__).parent.parent / "data" / "dag"


@pytest.fixture(autouse=True)
def no_scheduler(settings, monkeypatch, tmp_path):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.DCT_STORAGE = tmp_path / "storage"
    monkeypatch.setattr(wake, "_redis", None)
    monkeypatch.setattr(dispatch, "send_runs", lambda sends: len(sends))


@pytest.fixture
def folder(tmp_path):
    target = tmp_path / "dag"
    shutil.copytree(DATA, target)
    return target


def submit(folder: Path, text: str, owner, name="pipeline.dag"):
    prepared = prepare_dag(text, name, FolderFiles(folder))
    return dagman.submit_dag(prepared, owner, timezone.now())


def end(node: str, dag: Dag, exit_code: int = 0) -> None:
    """Every unfinished job of `node` ends with `exit_code` (as its node would report it)."""
    state = JobState.SUCCEEDED if exit_code == 0 else JobState.FAILED
    Job.objects.filter(dag=dag, dag_node__name=node).exclude(state__in=("succeeded", "failed", "cancelled")).update(
        state=state, exit_code=exit_code, finished_at=timezone.now()
    )


def step(rounds: int = 2) -> None:
    for _ in range(rounds):
        dagman.advance_dags(timezone.now())


def nodes(dag: Dag) -> dict[str, str]:
    return {n["name"]: n["state"] for n in dag_payload(Dag.objects.get(id=dag.id))["nodes"]}


def test_the_diamond_runs_parents_first_and_retries_a_failed_node(alice, folder):
    dag, jobs = submit(folder, (DATA / "diamond.dag").read_text(), alice)
    assert [j.dag_node.name for j in jobs] == ["A"], "only the root is queued at first"
    assert jobs[0].dag_id == dag.id and jobs[0].arguments == ["A"], "$(JOB) is the node's name"
    assert nodes(dag) == {"A": "queued", "B": "waiting", "C": "waiting", "D": "waiting"}
    end("A", dag)
    step()
    assert nodes(dag) == {"A": "succeeded", "B": "queued", "C": "queued", "D": "waiting"}
    end("B", dag)
    end("C", dag, exit_code=1)
    step()
    c = DagNode.objects.get(dag=dag, name="C")
    assert c.state == JobState.QUEUED and c.retries == 1, "RETRY C 3: the node runs again"
    assert len(dag_payload(dag)["nodes"][2]["jobs"]) == 2, "a retry is a new job of the node"
    end("C", dag)
    step(3)
    end("D", dag)
    step(3)
    dag.refresh_from_db()
    assert dag.state == "succeeded" and dag.exit_code == 0
    assert Job.objects.filter(dag=dag).exclude(email="").count() == 0, "one mail per DAG: its jobs send none"


def test_a_failed_node_stops_its_children_and_the_final_node_still_runs(alice, folder):
    text = "JOB A A.condor\nJOB B B.condor\nPARENT A CHILD B\nFINAL F C.condor\n"
    dag, _ = submit(folder, text, alice)
    end("A", dag, exit_code=2)
    step(3)
    assert nodes(dag) == {"A": "failed", "B": "cancelled", "F": "queued"}
    assert DagNode.objects.get(dag=dag, name="B").reason == "parent node A failed: this node never runs"
    end("F", dag)
    step(2)
    dag.refresh_from_db()
    assert dag.state == "succeeded", "the FINAL node's outcome decides the DAG's (DAGMan)"


def test_abort_dag_on_cancels_the_rest_and_returns_its_value(alice, folder):
    text = "JOB A A.condor\nJOB B B.condor\nJOB C C.condor\nPARENT A CHILD C\nABORT-DAG-ON A 3 RETURN 7\n"
    dag, jobs = submit(folder, text, alice)
    assert {j.dag_node.name for j in jobs} == {"A", "B"}
    end("A", dag, exit_code=3)
    step(3)
    dag.refresh_from_db()
    assert dag.state == "failed" and dag.exit_code == 7
    assert "ABORT-DAG-ON A 3" in dag.aborted
    assert Job.objects.get(dag=dag, dag_node__name="B").state == JobState.CANCELLED
    assert nodes(dag)["C"] == "cancelled"


def test_maxjobs_holds_back_nodes_of_a_category(alice, folder):
    text = "JOB A A.condor\nJOB B B.condor\nJOB C C.condor\nCATEGORY ALL_NODES c\nMAXJOBS c 2\nPRIORITY C 5\n"
    dag, jobs = submit(folder, text, alice)
    assert [j.dag_node.name for j in jobs] == ["C", "A"], "PRIORITY first, at most MAXJOBS at once"
    end("C", dag)
    step()
    assert nodes(dag)["B"] == "queued"


def test_pre_and_post_scripts_run_as_jobs_and_post_decides(alice, folder):
    text = (
        "JOB fit fit.sub DIR fits\nSCRIPT PRE fit check.sh $JOB $RETRY\n"
        "SCRIPT POST fit post.sh $JOB $RETURN $JOBID $MAX_RETRIES\nRETRY fit 1\n"
    )
    dag, jobs = submit(folder, text, alice)
    (pre,) = jobs
    assert pre.arguments == ["fit", "0"] and pre.executable.endswith("check.sh")
    end("fit", dag)
    step()
    job = Job.objects.filter(dag=dag).order_by("-id").first()
    assert job.arguments == ["fit", "0"], "the node's job, with $(JOB) $(RETRY)"
    end("fit", dag, exit_code=4)
    step()
    post = Job.objects.filter(dag=dag).order_by("-id").first()
    assert post.arguments == ["fit", "4", f"{job.id}.0", "1"], "$JOB $RETURN $JOBID $MAX_RETRIES"
    end("fit", dag)  # the POST script says the node succeeded, whatever its job did
    step(3)
    dag.refresh_from_db()
    assert dag.state == "succeeded"
    assert Job.objects.filter(dag=dag).count() == 3


def test_rerun_queues_again_what_did_not_succeed(alice, folder):
    text = "JOB A A.condor\nJOB B B.condor\nPARENT A CHILD B\n"
    dag, _ = submit(folder, text, alice)
    with pytest.raises(CommandError, match="is running: only a DAG that has ended"):
        call_command("dag", str(dag.id), "--rerun", user="alice")
    end("A", dag)
    step()
    end("B", dag, exit_code=1)
    step(3)
    out = io.StringIO()
    call_command("dag", str(dag.id), "--rerun", "--json", user="alice", stdout=out)
    shown = json.loads(out.getvalue())
    assert shown["state"] == "running"
    assert [(n["name"], n["state"]) for n in shown["nodes"]] == [("A", "succeeded"), ("B", "queued")]
    assert len(shown["nodes"][1]["jobs"]) == 2, "B's failed job stays in its history; a new one is queued"


def test_a_bad_node_refuses_the_whole_dag_and_queues_nothing(alice, folder):
    (folder / "bad.sub").write_text("executable = job.sh\nrequest_memory = lots\nqueue\n")
    with pytest.raises(SubmissionError) as caught:
        submit(folder, "JOB A A.condor\nJOB B bad.sub\nSCRIPT PRE A nothere.sh\n", alice)
    assert "pipeline.dag:3: script 'nothere.sh' not found" in str(caught.value)
    assert "bad.sub:2:" in str(caught.value)
    assert not Dag.objects.exists() and not Job.objects.exists()


def test_dag_json_shape_and_another_users_dag(alice, folder):
    dag, _ = submit(folder, (DATA / "diamond.dag").read_text(), alice)
    out = io.StringIO()
    call_command("dag", str(dag.id), "--json", user="alice", stdout=out)
    shown = json.loads(out.getvalue())
    assert shown["dag"] == dag.id and shown["state"] == "running"
    assert shown["nodes"][3] | {"jobs": []} == {
        "name": "D", "state": "waiting", "jobs": [], "parents": ["B", "C"], "phase": "", "retries": 0,
        "exit_code": None, "reason": "", "is_final": False,
    }  # fmt: skip
    with pytest.raises(CommandError, match=f"no DAG {dag.id} of yours"):
        call_command("dag", str(dag.id), user="bob")


def test_submit_recognises_a_dag_file_and_answers_its_id(alice, folder, monkeypatch):
    monkeypatch.chdir(folder)
    out = io.StringIO()
    call_command("submit", str(folder / "diamond.dag"), "--json", user="alice", stdout=out)
    shown = json.loads(out.getvalue())
    assert Dag.objects.get(id=shown["dag"]).owner.username == "alice"
    assert [(j["dag"], j["dag_node"]) for j in shown["jobs"]] == [(shown["dag"], "A")]


def test_a_vars_value_the_submit_language_cannot_hold_is_refused_at_the_job_line(alice, folder):
    with pytest.raises(SubmissionError) as caught:
        submit(folder, 'JOB A A.condor\nVARS A JOB="a #b"\n', alice)
    assert str(caught.value) == (
        "pipeline.dag:1: VARS A JOB: ' #' would start a comment in the submission; put that part in quotes"
    )


def test_abort_still_runs_the_final_node(alice, folder):
    dag, _ = submit(folder, "JOB A A.condor\nJOB B B.condor\nFINAL F C.condor\nABORT-DAG-ON A 3\n", alice)
    end("A", dag, exit_code=3)
    step(3)
    assert nodes(dag) == {"A": "failed", "B": "cancelled", "F": "queued"}
    end("F", dag)
    step(2)
    dag.refresh_from_db()
    assert (dag.state, dag.exit_code) == ("failed", 3), "without RETURN the DAG returns the node's exit value"


def test_a_deferred_post_script_runs_again_later_and_pre_skip_skips_the_job(alice, folder):
    text = (
        "JOB fit fit.sub DIR fits\nSCRIPT DEFER 2 30 POST fit post.sh\n"
        "JOB other fit.sub DIR fits\nSCRIPT PRE other check.sh\nPRE_SKIP other 5\n"
    )
    dag, jobs = submit(folder, text, alice)
    assert {j.dag_node.name for j in jobs} == {"fit", "other"}
    end("other", dag, exit_code=5)
    end("fit", dag)
    step()
    assert nodes(dag)["other"] == "succeeded", "PRE_SKIP: no job, no POST"
    assert Job.objects.filter(dag_node__name="other").count() == 1
    end("fit", dag, exit_code=2)  # the POST script asks to be deferred
    step()
    again = Job.objects.filter(dag=dag, dag_node__name="fit").order_by("-id").first()
    assert again.state == JobState.WAITING and again.start_after is not None, "DEFER 2 30: again in 30 s"
    assert 25 < (again.start_after - timezone.now()).total_seconds() <= 30


def test_a_noop_root_lets_its_children_start_at_submit(alice, folder):
    dag, jobs = submit(folder, "JOB A A.condor NOOP\nJOB B B.condor\nPARENT A CHILD B\n", alice)
    assert [j.dag_node.name for j in jobs] == ["B"]
    assert Job.objects.filter(dag_node__name="A").count() == 0
    assert nodes(dag) == {"A": "succeeded", "B": "queued"}


def test_one_mail_when_the_dag_ends_and_none_for_its_jobs(alice, folder, settings):
    from django.core import mail

    from dctoolkit.jobs import notify

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    (folder / "mail.sub").write_text("executable = job.sh\nnotify_user = a@example.org\nqueue\n")
    dag, _ = submit(folder, "JOB A mail.sub\nJOB B mail.sub\nPARENT A CHILD B\n", alice)
    end("A", dag)
    step()
    assert notify.send_due(timezone.now()) == 0
    end("B", dag, exit_code=1)
    step(3)
    assert notify.send_due(timezone.now()) == 1
    assert notify.send_due(timezone.now()) == 0
    (message,) = mail.outbox
    assert message.to == ["a@example.org"] and message.subject == f"[dctoolkit] dag {dag.id} (pipeline.dag) failed"
    assert "  B: failed (its job failed)" in message.body


def test_a_node_whose_stored_files_are_gone_fails_with_why_and_the_dag_goes_on(alice, folder):
    dag, _ = submit(folder, "JOB A A.condor\nJOB B B.condor\nPARENT A CHILD B\nFINAL F C.condor\n", alice)
    for stored in (dag.folder() / "files").iterdir():
        stored.unlink()
    end("A", dag)
    step(3)
    b = DagNode.objects.get(dag=dag, name="B")
    assert b.state == JobState.FAILED and b.reason.startswith("its files could not be read from storage")
    assert nodes(dag)["F"] == "failed", "the FINAL node too: nothing blocks the round"
    step(2)
    dag.refresh_from_db()
    assert dag.state == "failed"


def test_retention_removes_an_ended_dags_stored_files(alice, folder, settings):
    from datetime import timedelta

    from dctoolkit.operations.retention import purge_dags

    dag, _ = submit(folder, "JOB A A.condor\n", alice)
    assert purge_dags(timezone.now()) == 0, "a running DAG keeps its files"
    end("A", dag, exit_code=1)
    step()
    dag.refresh_from_db()
    assert dag.state == "failed" and (dag.folder() / "files").is_dir()
    assert purge_dags(timezone.now() - timedelta(days=1)) == 0, "ended after the cutoff"
    assert purge_dags(timezone.now() + timedelta(seconds=1)) == 1
    dag.refresh_from_db()
    assert dag.files == {} and not dag.folder().exists()
    call_command("dag", str(dag.id), "--rerun", user="alice", stdout=io.StringIO())
    assert "not found" in DagNode.objects.get(dag=dag, name="A").reason


def test_dag_prints_one_line_per_node(alice, folder):
    dag, jobs = submit(folder, (DATA / "diamond.dag").read_text(), alice)
    out = io.StringIO()
    call_command("dag", str(dag.id), user="alice", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"dag {dag.id} (pipeline.dag): running"
    assert lines[1].split() == ["A", "queued", "jobs", str(jobs[0].id), "parents", "-"]
    assert lines[4].split() == ["D", "waiting", "jobs", "-", "parents", "B,C"]
    with pytest.raises(CommandError, match="'x1' is not a DAG id"):
        call_command("dag", "x1", user="alice")


def test_the_osg_vars_tutorial_dag_gives_each_node_its_secret_and_job_name():
    # OSGConnect's DAGMan tutorial, verbatim (tests/data/dag/osg_vars): $(JOB) is the node's name, VARS
    # ALL_NODES is the default a node's own VARS overrides, and the macros expand before the argument
    # string is split, as condor_submit does.
    from dctoolkit.jobs.intake.dag import parse_dag
    from dctoolkit.jobs.intake.dagqueue import node_text
    from dctoolkit.jobs.intake.parse import parse_submission

    folder = DATA / "osg_vars"
    dag = parse_dag((folder / "diamond.dag").read_text(), "diamond.dag")
    submit = (folder / "append.sub").read_text()
    got = {}
    for node in dag.nodes:
        jobs = parse_submission(node_text(node, submit, 0, "diamond.dag"), "append.sub", cluster=12).jobs
        got[node.name] = [job.arguments for job in jobs]
    assert got["TOP"][1] == ("TOP[12.1]:", "Thanks", "RCFs", "for", "your", "hard", "work!!")
    assert got["LEFT"] == [("LEFT[12.0]:", "DAGMan", "is", "scary"), ("LEFT[12.1]:", "DAGMan", "is", "scary")]
    assert got["BOTTOM"][0] == ("BOTTOM[12.0]:", "No", "secret", "specified")
