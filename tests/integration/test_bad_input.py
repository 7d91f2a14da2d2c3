"""Every bad submission is refused with FILE:LINE and a fix, through the real CLI, and queues nothing."""

import pytest

pytestmark = pytest.mark.integration

GOOD = {"fit.py": "print('ok')\n", "data.csv": "1\n", "notes.txt": "just text\n"}

CASES = [
    ("executabel = fit.py\n", "job.txt:1: unknown key 'executabel' — did you mean 'executable'?"),
    ("data = data.csv\n", "job.txt:1: no executable given; add a line such as 'executable = fit.py'"),
    ("executable = missing.py\n", "job.txt:1: file '{dir}/missing.py' not found; check the name and that it exists"),
    (
        "executable = fit.py\ndata = nope.csv\n",
        "job.txt:2: file '{dir}/nope.csv' not found; check the name and that it exists",
    ),
    (
        "executable = notes.txt\n",
        "job.txt:1: 'notes.txt' cannot be run: it is not a .py file, has no '#!' line and no run bit; "
        "add a shebang such as '#!/bin/sh' as its first line, or run 'chmod +x' on it",
    ),
    ("executable = fit.py\nrequest_memory = 4 lots\n", "job.txt:2: '4 lots' is not a size"),
    ("executable = fit.py\nmax_runtime = tomorrow\n", "job.txt:2: 'tomorrow' is not a duration"),
    ("executable = fit.py\nrequest_cpus = 1.5\n", "job.txt:2: request_cpus must be a whole number, got '1.5'"),
    ("executable = fit.py\nclient = 9\n", "job.txt:2: unknown node 'node-9'; known nodes are: "),
    ("executable = fit.py\nrequest_cpus = 64\n", "job.txt:2: request_cpus asks for 64 cpus but the largest node has"),
    (
        "executable = fit.py\nrequest_gpus = 2\n",
        "job.txt:2: request_gpus asks for 2 GPUs but the largest node has 0 GPUs",
    ),
    ("executable = fit.py\nrequest_memory = 100TB\n", "job.txt:2: request_memory asks for 104857600 MB"),
    ("executable = fit.py\nemail = nobody\n", "job.txt:2: 'nobody' is not an email address"),
    ("executable = fit.py\nqueue = many\n", "job.txt:2: queue must be a whole number, got 'many'"),
    (
        "executable = fit.py\ntransfer_output_files = /etc/passwd\n",
        "job.txt:2: output '/etc/passwd' must be a path inside the job's folder",
    ),
    (
        "executable = fit.py\noutput = /etc/passwd\n",
        "job.txt:2: output = /etc/passwd: the file comes back with the job's results",
    ),
    ("executable = fit.py\nnetwork = wifi\n", "job.txt:2: network = wifi is not known"),
    ("executable = fit.py\ncontainer = /no/such/root\n", "job.txt:2: no node offers container '/no/such/root'"),
    ('executable = fit.py\narguments = "open\n', "job.txt:2: cannot read the arguments"),
    ("executable = fit.py\nexecutable = fit.py\n", "job.txt:2: 'executable' is given twice (first on line 1)"),
    ("executable = fit.py\ndata = $(Clustr).csv\n", "job.txt:2: '$(Clustr)' is not defined"),
    ("executable = fit.py\nuniverse = java\n", "job.txt:2: universe = java is not supported here"),
]


@pytest.mark.parametrize(("text", "message"), CASES)
def test_bad_submission_is_refused_and_nothing_is_queued(cluster, tmp_path, text, message):
    for name, content in GOOD.items():
        (tmp_path / name).write_text(content)
    (tmp_path / "job.txt").write_text(text)
    done = cluster.cli("submit", "job.txt", cwd=tmp_path, check=False, user="badinput")
    assert done.returncode == 1
    assert message.format(dir=tmp_path) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stdout == ""
    assert cluster.json("jobs", "--all", user="badinput")["jobs"] == []


def test_missing_submission_file_is_a_clear_error(cluster, tmp_path):
    done = cluster.cli("submit", "nope.txt", cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert "nope.txt: no such file; give the path of your submission file" in done.stderr


def test_one_bad_file_among_several_queues_none(cluster, tmp_path):
    (tmp_path / "fit.py").write_text("print(1)\n")
    (tmp_path / "good.txt").write_text("executable = fit.py\n")
    (tmp_path / "bad.txt").write_text("executable = fit.py\nrequest_cpus = zero\n")
    done = cluster.cli("submit", "good.txt", "bad.txt", cwd=tmp_path, check=False, user="several")
    assert done.returncode == 1 and "bad.txt:2: request_cpus must be a whole number" in done.stderr
    assert cluster.json("jobs", "--all", user="several")["jobs"] == []


def test_job_ids_that_are_not_numbers_or_not_there(cluster):
    assert "'abc' is not a job id" in cluster.cli("job", "abc", check=False).stderr
    assert "no job 999999 of yours" in cluster.cli("cancel", "999999", check=False).stderr
