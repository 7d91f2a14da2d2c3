"""The remote command line: the CLI with DCT_SERVER/DCT_TOKEN drives a real cluster through the API
(gunicorn), with the same output and exit codes, and never opens a database."""

import json
import select
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support.cluster import PYTHON, ROOT, wait_until
from tests.support.web import start_web

pytestmark = pytest.mark.integration

# Any database access from a remote command fails: nothing listens on port 1.
NO_DATABASE = "postgres://nobody@127.0.0.1:1/nodb"


@pytest.fixture(scope="module")
def remote(cluster):
    """A function that runs the CLI as a laptop would: only DCT_SERVER and alice's DCT_TOKEN."""
    server = start_web(cluster)
    token = cluster.cli("token", user="alice").stdout.strip()

    def run(*args: str, cwd: Path | None = None, token: str = token, server: str = server, env_extra=None, **kw):
        env = {**cluster.env, "DCT_SERVER": server, "DCT_TOKEN": token, "DATABASE_URL": NO_DATABASE}
        env.update(env_extra or {})
        return subprocess.run(
            [PYTHON, str(ROOT / "manage.py"), *args],
            cwd=cwd or cluster.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **kw,
        )

    run.server = server
    return run


def test_without_dct_server_that_environment_cannot_reach_a_database(cluster, remote):
    # The control for every test below: the same environment, minus DCT_SERVER, fails on the database.
    env = {**cluster.env, "DATABASE_URL": NO_DATABASE}
    done = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "jobs", "--user", "alice"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "the database is not reachable" in done.stderr


def test_submit_wait_remotely_shows_progress_and_exits_with_the_jobs_status(cluster, remote, tmp_path):
    (tmp_path / "three.sh").write_text("#!/bin/sh\necho going\ncat in.txt\nexit 3\n")
    (tmp_path / "in.txt").write_text("input data\n")
    (tmp_path / "job.txt").write_text("executable = three.sh\ndata = in.txt\n")
    done = remote("submit", "job.txt", "--wait", cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    job_id = int(lines[0].removeprefix("1 job submitted: "))
    assert lines[1] == f"job {job_id}: queued" or lines[1].startswith(f"job {job_id}: ")
    assert lines[-1].startswith(f"job {job_id}: failed (exit status 3) after ")
    assert remote("logs", str(job_id)).stdout == "going\ninput data\n"
    assert cluster.job(job_id)["owner"] == "alice"


def test_a_folder_input_submitted_remotely_sends_its_files_with_their_paths_and_runs(cluster, remote, tmp_path):
    # HTCondor's `dir/`: the files the folder holds, each in the job's folder by its name.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    (tmp_path / "data" / "b.txt").write_text("beta\n")
    (tmp_path / "show.sh").write_text("#!/bin/sh\ncat a.txt b.txt\n")
    (tmp_path / "job.sub").write_text("executable = show.sh\ntransfer_input_files = data/\nqueue\n")
    done = remote("submit", "job.sub", "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = int(done.stdout.splitlines()[0].removeprefix("1 job submitted: "))
    assert remote("logs", str(job_id)).stdout == "alpha\nbeta\n"


def test_an_empty_folder_input_submitted_remotely_is_sent_as_a_folder_and_runs_without_files(cluster, remote, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "show.sh").write_text("#!/bin/sh\nls\n")
    (tmp_path / "job.sub").write_text("executable = show.sh\ntransfer_input_files = data/\nqueue\n")
    done = remote("submit", "job.sub", "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = int(done.stdout.splitlines()[0].removeprefix("1 job submitted: "))
    assert cluster.job(job_id)["state"] == "succeeded"  # refused before: file 'data' not found


def test_a_bad_submission_is_refused_remotely_with_the_same_message(cluster, remote, tmp_path):
    (tmp_path / "job.txt").write_text("executable = run.sh\nexecutabel = x\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    local = cluster.cli("submit", "job.txt", cwd=tmp_path, check=False)
    far = remote("submit", "job.txt", cwd=tmp_path)
    assert far.returncode == local.returncode == 1
    assert (
        far.stderr == local.stderr == "CommandError: job.txt:2: unknown key 'executabel' — did you mean 'executable'?\n"
    )
    # Refused by the server (no node is that big), not by the local check.
    (tmp_path / "big.txt").write_text("executable = run.sh\nrequest_cpus = 512\n")
    far = remote("submit", "big.txt", cwd=tmp_path)
    assert far.returncode == 1
    assert far.stderr.startswith("CommandError: big.txt:2: request_cpus asks for 512 cpus but the largest node has")


def test_job_jobs_nodes_usage_print_the_same_remotely(cluster, remote, tmp_path):
    (job,) = cluster.submit(tmp_path, "executable = ok.sh\nname = same\n", {"ok.sh": "#!/bin/sh\necho ok\n"})
    cluster.wait_job(job["id"])
    for args in (
        ["job", str(job["id"])],
        ["job", str(job["id"]), "--json"],
        ["jobs", "--all", "--json"],
        ["jobs", "--all", "--name", "same"],
        ["usage", "--json"],
    ):
        local = cluster.cli(*args)
        far = remote(*args)
        assert far.returncode == 0, far.stderr
        if args[0] == "job" and "--json" not in args:  # the local one adds its storage folder
            local_lines = [line for line in local.stdout.splitlines() if not line.startswith("folder")]
            assert far.stdout.splitlines() == local_lines
        else:
            assert far.stdout == local.stdout, args
    nodes = json.loads(remote("nodes", "--json").stdout)["nodes"]
    assert {n["name"] for n in nodes} == {n["name"] for n in cluster.json("nodes")["nodes"]}
    assert "node-1" in remote("nodes").stdout


def test_results_remotely_download_stdout_stderr_and_outputs(cluster, remote, tmp_path):
    script = "#!/bin/sh\necho out\necho err >&2\nmkdir -p sub\necho 42 > sub/r.txt\n"
    (job,) = cluster.submit(tmp_path, "executable = w.sh\n", {"w.sh": script})
    cluster.wait_job(job["id"])
    done = remote("results", str(job["id"]), "--dest", "got", cwd=tmp_path)
    assert done.stdout == f"job {job['id']} (succeeded): 3 files in got/\n", done.stderr
    assert (tmp_path / "got" / "stdout").read_text() == "out\n"
    assert (tmp_path / "got" / "stderr").read_text() == "err\n"
    assert (tmp_path / "got" / "sub" / "r.txt").read_text() == "42\n"


@pytest.mark.parametrize("where", ["remote", "local"])
def test_logs_follow_prints_lines_while_the_job_runs(cluster, remote, tmp_path, where, gate):
    # The second line waits for the test: on a loaded machine a `sleep 15` had ended before the follower started.
    script = f"#!/bin/sh\necho first\n{gate.command}\necho second\n"
    (job,) = cluster.submit(tmp_path, "executable = slow.sh\n", {"slow.sh": script})
    env = {**cluster.env, "DCT_TOKEN": cluster.cli("token", user="alice").stdout.strip()}
    if where == "remote":
        env.update(DCT_SERVER=remote.server, DATABASE_URL=NO_DATABASE)
    follower = subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), "logs", str(job["id"]), "-f", "--user", "alice"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # The job waits at the gate, so a follower that printed nothing until the job ended would wait forever.
        assert select.select([follower.stdout], [], [], 120)[0], "no line in 120 s while the job ran"
        assert follower.stdout.readline() == "first\n"
        # Asked straight from the API (a CLI run would take too long on a slow machine).
        request = urllib.request.Request(
            f"{remote.server}/api/jobs/{job['id']}/", headers={"Authorization": f"Token {env['DCT_TOKEN']}"}
        )
        state = json.load(urllib.request.urlopen(request, timeout=10))["state"]
        assert state == "running", "the first line came while the job ran"
        gate.open()
        assert follower.stdout.read() == "second\n"
        assert follower.wait(timeout=60) == 0
    finally:
        follower.kill()
    assert cluster.job(job["id"])["state"] == "succeeded"


def test_hold_release_cancel_remotely_and_their_refusals(cluster, remote, tmp_path):
    (job,) = cluster.submit(tmp_path, "executable = long.sh\n", {"long.sh": "#!/bin/sh\nsleep 60\n"})
    jid = str(job["id"])
    assert remote("hold", jid).stdout == f"job {jid}: held\n"
    # Held at once; a job that had started is stopped by its node, and can be released once it has.
    wait_until(lambda: (j := cluster.job(job["id"]))["state"] == "held" and j["node"] is None, 30, "it to stop")
    refused = remote("hold", jid)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"CommandError: job {jid} is held: only waiting, queued, dispatched or running jobs can be held\n"
    )
    assert remote("release", jid).stdout == f"job {jid}: released\n"
    assert json.loads(remote("cancel", jid, "--json").stdout)["jobs"][0]["id"] == job["id"]
    assert cluster.wait_job(job["id"], timeout=30)["state"] == "cancelled"
    again = remote("cancel", jid)
    assert again.returncode == 1 and again.stderr == f"CommandError: job {jid} is cancelled: it has already ended\n"


def test_many_jobs_are_held_and_cancelled_remotely_by_submission_range_and_name(cluster, remote, tmp_path):
    (parent,) = cluster.submit(tmp_path / "p", "executable = s.sh\n", {"s.sh": "#!/bin/sh\nsleep 60\n"})
    text = f"executable = q.sh\nafter_ok = {parent['id']}\nqueue = 4\n"
    jobs = cluster.submit(tmp_path / "c", text, {"q.sh": "#!/bin/sh\n"})  # they wait while it runs
    first, sub = jobs[0]["id"], str(jobs[0]["submission"])
    assert remote("hold", "--submission", sub).stdout == "4 jobs held\n"
    released = json.loads(remote("release", f"{first}-{first + 1}", "--json").stdout)["jobs"]
    assert [(j["id"], j["state"]) for j in released] == [(first, "waiting"), (first + 1, "waiting")]
    assert remote("cancel", "--all", "--state", "held").stdout.startswith("2 jobs cancelled")
    assert remote("cancel", "--submission", sub).stdout.startswith("2 jobs cancelled")
    refused = remote("cancel", "--submission", "999999")
    assert refused.returncode == 1 and "no submission 999999 of yours" in refused.stderr
    remote("cancel", str(parent["id"]))


def test_another_users_job_is_not_found_remotely(cluster, remote, tmp_path):
    (job,) = cluster.submit(tmp_path, "executable = q.sh\n", {"q.sh": "#!/bin/sh\necho private\n"}, user="carol")
    for cmd in (["job", str(job["id"])], ["cancel", str(job["id"])], ["logs", str(job["id"])]):
        done = remote(*cmd)
        assert done.returncode == 1
        assert done.stderr == f"CommandError: no job {job['id']} of yours; './dct jobs --all' lists your jobs\n"


def test_a_bad_token_or_an_unreachable_server_says_what_to_do(remote):
    done = remote("jobs", token="wrong")
    assert done.returncode == 1 and "refused the token (Invalid token.)" in done.stderr
    assert "DCT_TOKEN" in done.stderr and "Traceback" not in done.stderr
    done = remote("nodes", server="http://127.0.0.1:1")
    assert done.returncode == 1 and "cannot reach DCT_SERVER=http://127.0.0.1:1" in done.stderr


def test_a_remote_command_makes_nothing_local(cluster, remote, tmp_path):
    # A laptop with no checkout state: no var/ folder, no SQLite file, no secret key may appear.
    laptop_var = tmp_path / "laptop-var"
    done = remote("jobs", "--json", env_extra={"DCT_VAR": str(laptop_var), "DATABASE_URL": "", "SECRET_KEY": ""})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["jobs"] is not None
    assert not laptop_var.exists(), sorted(p.name for p in laptop_var.rglob("*"))


def test_submit_script_parsable_append_and_status_remotely(cluster, remote, tmp_path):
    (tmp_path / "hi.sh").write_text('#!/bin/sh\necho far "$@"\n')
    (tmp_path / "hi.sh").chmod(0o755)
    done = remote("submit", "--script", "hi.sh", "--parsable", "--arguments", "away", "-a", "name=afar", cwd=tmp_path)
    assert done.returncode == 0, done
    job_id = int(done.stdout)  # the id alone
    cluster.wait_job(job_id)
    assert cluster.job(job_id)["name"] == "afar"
    assert remote("logs", str(job_id)).stdout == "far away\n"
    status = remote("status", str(job_id))
    assert (status.returncode, status.stdout, status.stderr) == (0, "succeeded\n", "")
    assert remote("status", "--as", "snakemake", str(job_id)).stdout == "success\n"


def test_status_and_bad_options_remotely_say_what_they_say_locally(cluster, remote, tmp_path):
    (job,) = cluster.submit(tmp_path, "executable = q.sh\n", {"q.sh": "#!/bin/sh\necho private\n"}, user="carol")
    far = remote("status", str(job["id"]))
    assert (far.returncode, far.stdout) == (1, "")
    assert far.stderr == f"CommandError: no job {job['id']} of yours; './dct jobs --all' lists your jobs\n"
    (tmp_path / "hi.sh").write_text("#!/bin/sh\n")
    far = remote("submit", "--script", "hi.sh", "--memory", "lots", cwd=tmp_path)
    near = cluster.cli("submit", "--script", "hi.sh", "--memory", "lots", cwd=tmp_path, check=False)
    assert far.returncode == near.returncode == 1
    assert far.stderr == near.stderr and far.stderr.startswith("CommandError: --memory lots: 'lots' is not a size")


def test_a_dag_file_submitted_remotely_uploads_its_nodes_files_and_runs(cluster, remote, tmp_path):
    (tmp_path / "fits").mkdir()
    files = {
        "pipeline.dag": "JOB A a.sub\nJOB B b.sub DIR fits\nPARENT A CHILD B\nSCRIPT POST B post.sh $RETURN\n",
        "a.sub": "executable = ok.sh\narguments = $(JOB)\nqueue\n",
        "ok.sh": '#!/bin/sh\necho "ran $1"\n',
        "fits/b.sub": "executable = fit.sh\ntransfer_input_files = data.csv\nqueue\n",
        "fits/fit.sh": "#!/bin/sh\ncat data.csv\n",
        "fits/data.csv": "1,2\n",
        "fits/post.sh": '#!/bin/sh\necho "post $1"\n',
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        if name.endswith(".sh"):
            (tmp_path / name).chmod(0o755)
    refused = remote("submit", "pipeline.dag", cwd=tmp_path / "fits")
    assert refused.returncode == 1 and "pipeline.dag: no such file" in refused.stderr
    done = remote("submit", "pipeline.dag", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert [j["dag_node"] for j in answer["jobs"]] == ["A"]

    def ended() -> dict | None:
        shown = json.loads(remote("dag", str(answer["dag"]), "--json").stdout)
        return shown if shown["state"] != "running" else None

    shown = wait_until(ended, 90, f"dag {answer['dag']} to end")
    assert shown["state"] == "succeeded", shown
    fit, post = shown["nodes"][1]["jobs"]
    assert remote("logs", str(fit)).stdout == "1,2\n" and remote("logs", str(post)).stdout == "post 0\n"
    again = remote("dag", str(answer["dag"]), "--rerun")
    assert again.stdout.startswith(f"dag {answer['dag']}: 0 nodes to run again\n"), "nothing failed"
