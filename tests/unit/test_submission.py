"""The submission-file parser: every rejection has its exact message."""

import pytest

from dctoolkit.jobs.intake.parse import (
    NodeOffer,
    SubmissionError,
    SubmitFacts,
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
    transfer_input_files = a.csv, sub/b.csv
    data = c.csv
    input = stdin.txt
    arguments = "--n 3 'two words' 'x y'"
    request_cpus = 4
    request_memory = 2GB
    request_gpus = 1
    max_runtime = 1h30m
    environment = "A=1 B='two words'"
    output = out.txt
    error = err.txt
    transfer_output_files = results/, summary.txt
    network = none
    container = /srv/images/debian/
    node = gpu-box
    name = my fit
    """
    (job,) = parse(text).jobs
    assert job.executable.name == "run.sh"
    assert [i.name for i in job.inputs] == ["a.csv", "b.csv", "c.csv", "stdin.txt"]
    assert (job.stdin, job.stdout, job.stderr) == ("stdin.txt", "out.txt", "err.txt")
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
        "transfer_output_files = out_$(Process).txt\nqueue = 3"
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
        (
            "executable = f.py\nrequest_dsk = 1GB\n",
            "job.txt:2: unknown key 'request_dsk' — did you mean 'request_disk'?",
        ),
        ("executable = f.py\nrequest_cpu = 2\n", "job.txt:2: unknown key 'request_cpu' — did you mean 'request_cpus'?"),
        (
            "executable = f.py\nflavour = vanilla\n",
            "job.txt:2: unknown key 'flavour'; see the submission keys in the README "
            "(a macro you define must be used as $(NAME) somewhere in the file)",
        ),
        ("data = d.csv\n", "job.txt:1: no executable given; add a line such as 'executable = fit.py'"),
        ("", "job.txt:1: no executable given; add a line such as 'executable = fit.py'"),
        ("executable f.py\n", "job.txt:1: expected 'key = value' or a queue statement, got 'executable f.py'"),
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
        ("executable = f.py\nqueue = -1\n", "job.txt:2: queue = -1 is out of range; use 0 to 100000"),
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
            "job.txt:2: cannot read the arguments: an arguments value that starts with '\"' is in the new syntax "
            "and must end with '\"'; write it like arguments = \"one 'two words' three\"",
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
            "executable = f.py\ntransfer_output_files = ../../etc/passwd\n",
            "job.txt:2: output '../../etc/passwd' must be a path inside the job's folder, such as results/ or out.csv",
        ),
        (
            "executable = f.py\noutput = ../../etc/passwd\n",
            "job.txt:2: output = ../../etc/passwd: the file comes back with the job's results, so name it inside "
            "the results folder, such as out.$(Process).txt (or /dev/null to keep none)",
        ),
        (
            "executable = f.py\narguments = $(Clustr)\n",
            "job.txt:2: '$(Clustr)' is not defined; define it with a line 'Clustr = ...', "
            "or use $(Clustr:default) for a default",
        ),
        (
            "executable = f.py\ndata = a/x.csv, b/x.csv\n",
            "job.txt:2: two files would be staged as 'x.csv' (also on line 2); rename one of them, "
            "every input lands in the job's folder by its file name",
        ),
        (
            "executable = f.py\ndata = sub/f.py\n",
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
        "job.txt:2: queue = 11 is out of range; use 0 to 10"
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


# --- HTCondor's submit language (issue 16) ------------------------------------------------------


def test_htcondor_keys_get_no_misleading_suggestion():
    text = "executable = f.py\nrequest_disk = 1GB\nmax_retries = 3\naccounting_group_user = bob\nqueue\n"
    # request_disk and max_retries are read (no "did you mean request_gpus / max_runtime");
    # accounting_group_user is known and refused until it is built (no "did you mean accounting_group").
    assert error_of(text).splitlines() == [
        "job.txt:4: 'accounting_group_user' is refused: dctoolkit does not support it yet; remove the line",
    ]


def test_every_problem_of_a_file_is_reported_at_once_up_to_20():
    text = "executable = f.py\n" + "".join(f"bogus_key_{i} = 1\n" for i in range(30))
    lines = error_of(text).splitlines()
    assert len(lines) == 20
    assert lines[0].startswith("job.txt:2: unknown key 'bogus_key_0'")
    assert lines[-1].startswith("job.txt:21: unknown key 'bogus_key_19'")


def test_queue_zero_queues_nothing_and_cluster_is_the_given_id():
    assert parse("executable = f.py\nqueue 0\n").jobs == ()
    jobs = parse_submission("executable = f.py\nname = job.$(Cluster)\nqueue 2\n", "job.txt", cluster=12).jobs
    assert [(j.name, j.process) for j in jobs] == [("job.12", 0), ("job.12", 1)]


def test_camel_case_keys_user_macros_and_defaults():
    text = (
        "Executable = f.py\nRequestCpus = 2\nRequest_Memory = 2 GB\nsample = s$(Process)\n"
        "Arguments = $(sample) $(size:10)\nQueue 2\n"
    )
    jobs = parse(text).jobs
    assert [(j.request_cpus, j.request_memory_mb, j.arguments) for j in jobs] == [
        (2, 2048, ("s0", "10")),
        (2, 2048, ("s1", "10")),
    ]


def test_a_macro_defined_but_never_used_is_still_a_typo():
    assert error_of("executable = f.py\nargumnets = -v\n") == (
        "job.txt:2: unknown key 'argumnets' — did you mean 'arguments'?"
    )


def test_universe_container_and_refused_universes():
    (job,) = parse("universe = container\ncontainer_image = debian\nexecutable = f.py\nqueue\n").jobs
    assert job.container == "debian"
    assert error_of("universe = container\nexecutable = f.py\n") == (
        "job.txt:1: universe = container needs container_image = NAME (a root filesystem a node offers)"
    )
    assert error_of("universe = grid\nexecutable = f.py\n") == (
        "job.txt:1: universe = grid is not supported here; use universe = vanilla (the default), "
        "or universe = container"
    )
    assert error_of("universe = docker\ndocker_image = centos\nexecutable = f.py\n").splitlines()[0] == (
        "job.txt:1: universe = docker is not supported here; use universe = container with "
        "container_image = NAME of a root filesystem a node offers"
    )


def test_container_image_names_a_root_by_its_folder_name():
    nodes = [NodeOffer("node-1", 2, 4096, 0, ("/srv/roots/debian",))]
    sub = parse("executable = f.py\ncontainer_image = debian\n")
    check_nodes(sub, nodes)
    with pytest.raises(SubmissionError, match="no node offers container 'alpine'"):
        check_nodes(parse("executable = f.py\ncontainer_image = alpine\n"), nodes)


def test_notification_never_mails_nobody_and_hold_submits_held():
    (job,) = parse("executable = f.py\nnotify_user = me@lab.org\nnotification = Never\nhold = true\n").jobs
    assert (job.email, job.notification, job.hold) == ("", "never", True)


def test_getenv_copies_the_submitters_environment_but_never_server_secrets():
    env = {"PATH": "/usr/bin", "HOME": "/home/me", "SECRET_KEY": "s", "EMAIL_HOST_PASSWORD": "p", "LD_PRELOAD": "x"}
    env |= {
        "DCT_LDAP_BIND_PASSWORD": "l",
        "DCT_OIDC_CLIENT_SECRET": "o",
        "DCT_METRICS_TOKEN": "m",
        "FLOWER_BASIC_AUTH": "f",
    }
    facts = SubmitFacts(env=env)
    (job,) = parse_submission("executable = f.py\ngetenv = true\nenvironment = HOME=/job\n", facts=facts).jobs
    assert job.environment == {"PATH": "/usr/bin", "HOME": "/job"}
    (job,) = parse_submission("executable = f.py\ngetenv = PA*, SECRET_KEY\n", facts=facts).jobs
    assert job.environment == {"PATH": "/usr/bin"}
    (job,) = parse_submission("executable = f.py\narguments = $ENV(HOME)\n", facts=facts).jobs
    assert job.arguments == ("/home/me",)


def test_attributes_request_disk_and_accepted_keys():
    text = (
        'executable = f.py\n+Project = "lab"\nMY.Owner2 = "me"\nrequest_disk = 2048\n'
        "should_transfer_files = IF_NEEDED\nwhen_to_transfer_output = ON_EXIT\nstream_output = true\n"
    )
    (job,) = parse(text).jobs
    assert (job.attributes, job.request_disk_mb) == ({"Project": '"lab"', "Owner2": '"me"'}, 2)


def test_output_error_and_input_are_stdout_stderr_and_stdin():
    text = (
        "executable = f.py\ninitialdir = run$(Process)\ninput = in.txt\noutput = out.txt\nerror = /dev/null\nqueue 2\n"
    )
    jobs = parse(text).jobs
    assert [(j.stdin, j.stdout, j.stderr, [i.source for i in j.inputs]) for j in jobs] == [
        ("in.txt", "run0/out.txt", "", ["run0/in.txt"]),
        ("in.txt", "run1/out.txt", "", ["run1/in.txt"]),
    ]


def test_queue_from_a_missing_list_and_old_and_new_queue_together():
    assert error_of("executable = f.py\nqueue x from list.txt\n") == (
        "job.txt:2: the item list 'list.txt' was not found beside the submission file"
    )
    assert error_of("executable = f.py\nqueue = 2\nqueue 3\n") == (
        "job.txt:3: 'queue = N' (line 2) and a queue statement in one file; keep the queue statements"
    )


def test_the_settings_of_a_broken_or_empty_queue_statement_are_still_checked():
    assert error_of("executable = f.py\nrequest_cpus = many\nqueue 0\n") == (
        "job.txt:2: request_cpus must be a whole number, got 'many'"
    )
    assert error_of("executable = f.py\narguments = $(x)\nuniverse = vm\nqueue x frm list\n").splitlines() == [
        "job.txt:3: universe = vm is not supported here; use universe = vanilla (the default), or universe = container",
        "job.txt:4: cannot read 'queue x frm list': after the count comes 'VAR in (...)', 'VAR from FILE' "
        "or 'VAR matching GLOB'",
    ]


def test_an_own_key_used_as_a_macro_keeps_htcondors_meaning():
    (job,) = parse("executable = f.py\ndata = /big/set\narguments = --in $(data)\n").jobs
    assert (job.inputs, job.arguments) == ((), ("--in", "/big/set"))


def test_request_disk_more_than_any_nodes_free_scratch_is_refused():
    nodes = [NodeOffer("node-1", 2, 4096, 0, (), 5000), NodeOffer("node-2", 2, 4096, 0, (), 8000)]
    check_nodes(parse("executable = f.py\nrequest_disk = 7GB\n"), nodes)
    with pytest.raises(SubmissionError) as info:
        check_nodes(parse("executable = f.py\nrequest_disk = 9GB\n"), nodes)
    assert str(info.value) == (
        "job.txt:2: request_disk asks for 9216 MB but the node with the most has 8000 MB of free scratch space; "
        "ask for at most 8000 MB"
    )
    check_nodes(parse("executable = f.py\nrequest_disk = 9GB\n"), [NodeOffer("node-3", 2, 4096, 0)])


def test_accounting_group_is_read_and_a_name_that_cannot_be_a_group_is_refused_at_its_line():
    (job,) = parse('executable = f.py\naccounting_group = "bio"\nqueue\n').jobs
    assert job.accounting_group == "bio"
    (job,) = parse("executable = f.py\nqueue\n").jobs
    assert job.accounting_group == ""
    assert error_of("executable = f.py\naccounting_group = bio group\nqueue\n").splitlines() == [
        "job.txt:2: accounting_group = bio group: a group name is letters, digits, '_', '.' and '-' "
        "(./dct group lists the groups)",
    ]


# --- what the real corpus (tests/data/condor) showed: keys HTCondor takes that were refused -------------


def test_an_empty_value_means_none_as_in_condor_submit():
    # OSG and CHTC templates leave `arguments =` and `transfer_output_files =` empty.
    (job,) = parse("executable = f.py\narguments =\ntransfer_output_files =\ntransfer_input_files =\nqueue\n").jobs
    assert (job.arguments, job.output, job.inputs) == ((), (), ())
    (job,) = parse("executable = f.py\narguments = a\narguments =\narguments = b c\n").jobs
    assert job.arguments == ("b", "c")  # unset, then set again: not "given twice"
    assert (
        error_of("executable =\n")
        == "job.txt:1: 'executable' has no value; write 'executable = ...' or remove the line"
    )


def test_the_executable_listed_among_the_inputs_is_staged_once():
    (job,) = parse("executable = ./echo_to_file\ntransfer_input_files = echo_to_file, in.txt\n").jobs
    assert [i.name for i in job.inputs] == ["in.txt"]
    assert "two files would be staged as 'f.py'" in error_of("executable = f.py\ntransfer_input_files = sub/f.py\n")


@pytest.mark.parametrize(
    "url",
    ["http://stash.osgconnect.net/+me/words.tar.gz", "stash:///osgconnect/public/db.tar.gz", "osdf:///ospool/x"],
)
def test_an_input_named_by_url_is_refused_with_the_reason(url):
    assert error_of(f"executable = f.py\ntransfer_input_files = a.txt, {url}\n").startswith("job.txt:2: ")
    assert "inputs are not downloaded here" in error_of(f"executable = f.py\ntransfer_input_files = {url}\n")


def test_require_gpus_takes_greater_than_on_memory():
    (job,) = parse("executable = f.py\nrequest_gpus = 1\nrequire_gpus = (GlobalMemoryMB > 8000)\n").jobs
    assert job.gpu_memory_mb == 8001
    assert "use == with a quoted name" in error_of('executable = f.py\nrequire_gpus = DeviceName > "A100"\n')


def test_jobbatchname_is_a_plain_macro_as_condor_submit_takes_it():
    (job,) = parse("executable = f.py\nJobBatchName = sweep_$(Cluster)\n", cluster=3).jobs
    assert job.batch_name == ""


def test_on_exit_hold_and_periodic_release_are_read_as_written():
    text = "executable = f.py\non_exit_hold = (ExitCode != 0)\nPeriodic_Release = (NumJobStarts < 5)\n"
    (job,) = parse(text).jobs
    assert job.policy == {"on_exit_hold": "(ExitCode != 0)", "periodic_release": "(NumJobStarts < 5)"}


def test_every_policy_expression_classad2_cannot_read_is_refused_at_its_line_at_once():
    text = (
        "executable = f.py\non_exit_hold = (ExitCode != 0\nperiodic_release = NumJobStarts <\n"
        'periodic_hold_reason = strcat("x",\n'
    )
    example = (
        "write it as HTCondor does, such as (ExitBySignal == True) || (ExitCode != 0) or "
        "(NumJobStarts < 5) && ((CurrentTime - EnteredCurrentStatus) > 60)"
    )
    assert error_of(text).splitlines() == [
        f"job.txt:2: on_exit_hold = (ExitCode != 0: not a ClassAd expression; {example}",
        f"job.txt:3: periodic_release = NumJobStarts <: not a ClassAd expression; {example}",
        'job.txt:4: periodic_hold_reason = strcat("x",: not a ClassAd expression; write a string expression, such as '
        'strcat("exit code ", ExitCode)',
    ]


def test_transfer_output_remaps_rename_outputs_and_the_output_and_error_files():
    text = (
        "executable = f.py\ninitialdir = run\noutput = out.$(Process)\nerror = err.txt\n"
        'transfer_output_remaps = "out.$(Process) = logs/out.$(Process); err.txt = logs/err; '
        'r.csv = r_$(Process).csv"\n'
        "queue 2\n"
    )
    jobs = parse(text).jobs
    assert [(j.stdout, j.stderr, j.output_remaps) for j in jobs] == [
        ("run/logs/out.0", "run/logs/err", {"r.csv": "r_0.csv"}),
        ("run/logs/out.1", "run/logs/err", {"r.csv": "r_1.csv"}),
    ]


def test_every_remap_that_leaves_the_results_folder_is_refused_at_its_line():
    text = (
        'executable = f.py\ntransfer_output_remaps = "a = /etc/passwd; b = ../../x; ../c = d; e = f; g = f; h/ = i"\n'
    )
    assert error_of(text).splitlines() == [
        "job.txt:2: transfer_output_remaps: 'a = /etc/passwd' would put the file outside the job's results folder; "
        "give a path inside it, such as results/a",
        "job.txt:2: transfer_output_remaps: 'b = ../../x' would put the file outside the job's results folder; "
        "give a path inside it, such as results/b",
        "job.txt:2: transfer_output_remaps: '../c' names no file of the job's folder; name it as the job writes it "
        "there, such as out.csv",
        "job.txt:2: transfer_output_remaps: two outputs would come back as 'f'",
        "job.txt:2: transfer_output_remaps: 'h/' is a folder; folders are not remapped (as in HTCondor): remap each "
        "file, or have the job write the folder under the name you want",
    ]
