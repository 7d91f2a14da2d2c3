"""The submission-file parser: every rejection has its exact message."""

import pytest

from dctoolkit.jobs.submission import (
    NodeOffer,
    SubmissionError,
    check_nodes,
    executable_problem,
    parse_submission,
)


def parse(text: str, **kwargs):
    return parse_submission(text, "job.txt", **kwargs)


def error_of(text: str, **kwargs) -> str:
    with pytest.raises(SubmissionError) as info:
        parse(text, **kwargs)
    return str(info.value)


def test_seed_format_four_lines():
    sub = parse("executable = fit.py\ndata = data.csv\nemail = me@lab.org\nclient = 2\n")
    (job,) = sub.jobs
    assert job.executable.name == "fit.py"
    assert [i.name for i in job.inputs] == ["data.csv"]
    assert job.email == "me@lab.org"
    assert job.node == "node-2"
    assert job.name == "fit"
    assert (job.request_cpus, job.request_memory_mb, job.request_gpus) == (1, 256, 0)


def test_every_key():
    text = """
    # a comment
    EXECUTABLE = run.sh
    input = a.csv, sub/b.csv
    data = c.csv
    arguments = --n 3 "two words" 'x y'
    request_cpus = 4
    request_memory = 2GB
    request_gpus = 1
    max_runtime = 1h30m
    environment = "A=1 B='two words'"
    output = results/, summary.txt
    network = none
    container = /srv/images/debian/
    node = gpu-box
    name = my fit
    """
    (job,) = parse(text).jobs
    assert job.executable.name == "run.sh"
    assert [i.name for i in job.inputs] == ["a.csv", "b.csv", "c.csv"]
    assert job.arguments == ("--n", "3", "two words", "x y")
    assert (job.request_cpus, job.request_memory_mb, job.request_gpus) == (4, 2048, 1)
    assert job.max_runtime_seconds == 5400
    assert job.environment == {"A": "1", "B": "two words"}
    assert job.output == ("results", "summary.txt")
    assert job.network == "none"
    assert job.container == "/srv/images/debian"
    assert job.node == "gpu-box"
    assert job.name == "my fit"


def test_queue_substitutes_process_in_arguments_data_and_output():
    text = (
        "executable = f.py\ndata = in_$(Process).csv\narguments = --part $(process)\n"
        "output = out_$(Process).txt\nqueue = 3"
    )
    jobs = parse(text).jobs
    assert [j.process for j in jobs] == [0, 1, 2]
    assert [j.inputs[0].name for j in jobs] == ["in_0.csv", "in_1.csv", "in_2.csv"]
    assert [j.arguments for j in jobs] == [("--part", "0"), ("--part", "1"), ("--part", "2")]
    assert [j.output for j in jobs] == [("out_0.txt",), ("out_1.txt",), ("out_2.txt",)]


def test_queue_without_process_gives_numbered_copies_of_one_job():
    jobs = parse("executable = f.py\ndata = in.csv\narguments = -n 1\nname = fit\nqueue = 3").jobs
    assert [j.process for j in jobs] == [0, 1, 2]
    assert {(j.name, j.arguments, j.inputs[0].name) for j in jobs} == {("fit", ("-n", "1"), "in.csv")}


def test_process_in_the_name_alone_still_numbers_each_name():
    jobs = parse("executable = f.py\nname = part-$(Process)\nqueue = 2").jobs
    assert [j.name for j in jobs] == ["part-0", "part-1"]


def test_bare_memory_number_is_megabytes_and_comment_after_value():
    (job,) = parse("executable = f.py\nrequest_memory = 300  # MB\n").jobs
    assert job.request_memory_mb == 300


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("executabel = f.py\n", "job.txt:1: unknown key 'executabel' — did you mean 'executable'?"),
        ("executable = f.py\nrequest_cpu = 2\n", "job.txt:2: unknown key 'request_cpu' — did you mean 'request_cpus'?"),
        (
            "executable = f.py\nflavour = vanilla\n",
            "job.txt:2: unknown key 'flavour'; known keys are: executable, data, input, email, client, node, "
            "arguments, request_cpus, request_memory, request_gpus, max_runtime, environment, output, queue, "
            "network, container, name",
        ),
        ("data = d.csv\n", "job.txt:1: no executable given; add a line such as 'executable = fit.py'"),
        ("", "job.txt:1: no executable given; add a line such as 'executable = fit.py'"),
        ("executable f.py\n", "job.txt:1: expected 'key = value', got 'executable f.py'"),
        (
            "executable = f.py\nqueue 5\n",
            "job.txt:2: expected 'key = value', got 'queue 5' (HTCondor's 'queue' line is written 'queue = N' here)",
        ),
        (
            "executable = f.py\nexecutable = g.py\n",
            "job.txt:2: 'executable' is given twice (first on line 1); keep one of them",
        ),
        ("executable =\n", "job.txt:1: 'executable' has no value; write 'executable = ...' or remove the line"),
        (
            "executable = f.py\nrequest_memory = lots\n",
            "job.txt:2: 'lots' is not a size; write it like 512MB, 4GB or 2048 (a bare number is MB)",
        ),
        (
            "executable = f.py\nrequest_memory = 4PB\n",
            "job.txt:2: '4PB' is not a size; write it like 512MB, 4GB or 2048 (a bare number is MB)",
        ),
        (
            "executable = f.py\nmax_runtime = soon\n",
            "job.txt:2: 'soon' is not a duration; write it like 90s, 10m, 2h, 1d or 1h30m",
        ),
        (
            "executable = f.py\nmax_runtime = 0s\n",
            "job.txt:2: '0s' is not a positive duration; write it like 90s, 10m or 2h",
        ),
        ("executable = f.py\nrequest_cpus = two\n", "job.txt:2: request_cpus must be a whole number, got 'two'"),
        ("executable = f.py\nrequest_cpus = 0\n", "job.txt:2: request_cpus = 0 is out of range; use 1 to 1024"),
        ("executable = f.py\nrequest_gpus = -1\n", "job.txt:2: request_gpus = -1 is out of range; use 0 to 64"),
        ("executable = f.py\nqueue = 0\n", "job.txt:2: queue = 0 is out of range; use 1 to 100000"),
        (
            "executable = f.py\nemail = me.at.lab\n",
            "job.txt:2: 'me.at.lab' is not an email address; write it like email = me@lab.org",
        ),
        (
            "executable = f.py\nclient = node 2\n",
            "job.txt:2: 'node 2' is not a node name; write client = 2 (for node-2) or node = NAME",
        ),
        (
            'executable = f.py\narguments = "unclosed\n',
            "job.txt:2: cannot read the arguments (No closing quotation); close every quote",
        ),
        (
            "executable = f.py\nenvironment = A\n",
            "job.txt:2: 'A' is not NAME=value; write it like environment = \"A=1 B=two\"",
        ),
        (
            "executable = f.py\nnetwork = off\n",
            "job.txt:2: network = off is not known; use 'none' (no network), 'private' (outbound only) or 'host'",
        ),
        (
            "executable = f.py\ncontainer = images/debian\n",
            "job.txt:2: container = images/debian: give the absolute path of a root filesystem folder",
        ),
        (
            "executable = f.py\noutput = ../../etc/passwd\n",
            "job.txt:2: output '../../etc/passwd' must be a path inside the job's folder, such as results/ or out.csv",
        ),
        (
            "executable = f.py\narguments = $(Cluster)\n",
            "job.txt:2: unknown macro '$(Cluster)'; the only macro is $(Process), the job's number 0..N-1",
        ),
        (
            "executable = f.py\ndata = a/x.csv, b/x.csv\n",
            "job.txt:2: two files would be staged as 'x.csv' (also on line 2); rename one of them, "
            "every input lands in the job's folder by its file name",
        ),
        (
            "executable = f.py\ndata = f.py\n",
            "job.txt:2: two files would be staged as 'f.py' (also on line 1); rename one of them, "
            "every input lands in the job's folder by its file name",
        ),
        ("executable = ..\n", "job.txt:1: '..' is not a file name; name the executable file, such as data.csv"),
    ],
)
def test_bad_input_is_refused_with_located_message(text, message):
    assert error_of(text) == message


def test_queue_limit_is_configurable():
    assert error_of("executable = f.py\nqueue = 11\n", max_queue=10) == (
        "job.txt:2: queue = 11 is out of range; use 1 to 10"
    )


def test_executable_must_be_python_shebang_or_run_bit():
    assert executable_problem("fit.py", b"im", False) is None
    assert executable_problem("run", b"#!", False) is None
    assert executable_problem("a.out", b"\x7fE", True) is None
    assert executable_problem("notes.txt", b"he", False) == (
        "'notes.txt' cannot be run: it is not a .py file, has no '#!' line and no run bit; "
        "add a shebang such as '#!/bin/sh' as its first line, or run 'chmod +x' on it"
    )


NODES = [NodeOffer("node-1", 2, 4096, 0), NodeOffer("node-2", 4, 8192, 1, ("/srv/deb",))]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("executable = f.py\nclient = 7\n", "job.txt:2: unknown node 'node-7'; known nodes are: node-1, node-2"),
        (
            "executable = f.py\nrequest_cpus = 16\n",
            "job.txt:2: request_cpus asks for 16 cpus but the largest node has 4 cpus; ask for at most 4 cpus",
        ),
        (
            "executable = f.py\nrequest_memory = 64GB\n",
            "job.txt:2: request_memory asks for 65536 MB but the largest node has 8192 MB; ask for at most 8192 MB",
        ),
        (
            "executable = f.py\nclient = 1\nrequest_gpus = 1\n",
            "job.txt:3: request_gpus asks for 1 GPUs but node node-1 has 0 GPUs; ask for at most 0 GPUs",
        ),
        (
            "executable = f.py\ncontainer = /srv/other\n",
            "job.txt:2: no node offers container '/srv/other'; containers offered: /srv/deb",
        ),
    ],
)
def test_requests_no_node_could_satisfy_are_refused(text, message):
    with pytest.raises(SubmissionError) as info:
        check_nodes(parse(text), NODES)
    assert str(info.value) == message


def test_any_request_is_accepted_while_no_node_is_known():
    check_nodes(parse("executable = f.py\nrequest_cpus = 512\nclient = 9\n"), [])
