"""`submit --script PROGRAM --cpus 4 ...`, `submit FILE -a KEY=VALUE` and `--parsable`: the options become
submission text that the one parser checks, and its errors speak of the options."""

import pytest

from dctoolkit.jobs.intake.flags import append_pairs, append_to, flag_pairs, script_submission
from dctoolkit.jobs.intake.parse import SubmissionError, parse_submission
from dctoolkit.jobs.management.commands.submit import Command


def parse(argv):
    return vars(Command().create_parser("manage.py", "submit").parse_args(argv))


def test_options_come_in_any_order_around_the_program():
    first = parse(["--script", "--cpus", "4", "--memory", "2GB", "run.sh", "--parsable", "--time", "10m"])
    second = parse(["run.sh", "--time", "10m", "--parsable", "--memory", "2GB", "--script", "--cpus", "4"])
    assert first == second
    assert first["files"] == ["run.sh"] and first["script"] and first["parsable"]
    assert (first["cpus"], first["memory"], first["time"]) == ("4", "2GB", "10m")


def test_append_may_repeat_and_keeps_its_order():
    options = parse(["job.txt", "-a", "request_cpus=2", "--append", "name=fit", "-a", "email=me@lab.org"])
    assert options["append"] == ["request_cpus=2", "name=fit", "email=me@lab.org"]


def test_a_script_becomes_a_submission_the_parser_reads():
    argv = ["--script", "fit.py", "--cpus", "2", "--memory", "1GB", "--gpus", "1", "--time", "2h", "--name", "fit"]
    options = parse([*argv, "--queue", "3", "--arguments", "--seed $(Process)", "--email", "me@lab.org"])
    built = script_submission("code/fit.py", flag_pairs(options))
    jobs = parse_submission(built.text, "code/fit.py").jobs
    assert len(jobs) == 3 and jobs[2].arguments == ("--seed", "2")
    job = jobs[0]
    assert (job.executable.source, job.name, job.email) == ("fit.py", "fit", "me@lab.org")
    assert (job.request_cpus, job.request_memory_mb, job.request_gpus, job.max_runtime_seconds) == (2, 1024, 1, 7200)


def test_an_error_on_an_option_names_the_option():
    built = script_submission("run.sh", flag_pairs({"memory": "4XB"}))
    with pytest.raises(SubmissionError) as bad:
        parse_submission(built.text, "run.sh")
    assert built.explain(bad.value) == (
        "--memory 4XB: '4XB' is not a size; write it like 512MB, 4GB or 2048 (a bare number is MB)"
    )


def test_a_program_name_with_spaces_is_quoted():
    built = script_submission("my runs/fit job.py", [])
    assert parse_submission(built.text, "x").jobs[0].executable.source == "fit job.py"


def test_chdir_becomes_an_absolute_initialdir_the_job_starts_in():
    built = script_submission("run.sh", flag_pairs({"chdir": "/data/lab/alice"}))
    (job,) = parse_submission(built.text, "run.sh").jobs
    assert (job.chdir, job.initialdir) == ("/data/lab/alice", "")


def test_a_chdir_with_dot_dot_is_refused_in_the_options_words():
    built = script_submission("run.sh", flag_pairs({"chdir": "/data/../etc"}))
    with pytest.raises(SubmissionError) as bad:
        parse_submission(built.text, "run.sh")
    assert built.explain(bad.value).startswith("--chdir /data/../etc: initialdir = /data/../etc: '..' is not allowed")


def test_after_options_become_the_dependency_keys():
    assert flag_pairs({"after_ok": "12", "after_fail": "batch:3"}) == [
        ("after_ok", "12", "--after-ok 12"),
        ("after_fail", "batch:3", "--after-fail batch:3"),
    ]
    built = script_submission("run.sh", flag_pairs({"after_any": "4-6"}))
    (ref,) = parse_submission(built.text, "run.sh").dependencies
    assert (ref.kind, ref.ids) == ("after_any", (4, 5, 6))


def test_a_value_is_one_line_and_never_a_comment():
    with pytest.raises(ValueError, match=r"^--name a\.\.\.: a value is one line"):
        script_submission("run.sh", flag_pairs({"name": "a\nexecutable = evil.sh"}))
    with pytest.raises(ValueError, match="would start a comment"):
        script_submission("run.sh", flag_pairs({"name": "x #1"}))


def test_arguments_are_read_as_a_shell_reads_them():
    def argv(typed: str) -> tuple[str, ...]:
        return parse_submission(script_submission("run.sh", flag_pairs({"arguments": typed})).text).jobs[0].arguments

    assert argv("x #1") == ("x", "#1")
    assert argv("'x #1'") == ("x #1",)
    assert argv("""a "b c" 'it''s'""") == ("a", "b c", "its")
    assert argv("""say 'don"t'""") == ("say", 'don"t')
    with pytest.raises(ValueError, match="close every quote"):
        flag_pairs({"arguments": "'open"})


FILE = "executable = fit.py\nrequest_cpus = 1\nname = old\nqueue = 2\n"


def test_append_replaces_the_files_key_and_adds_new_ones_before_the_queue_line():
    built = append_to(FILE, append_pairs(["request_cpus=4", "email=me@lab.org"]))
    jobs = parse_submission(built.text, "job.txt").jobs
    assert len(jobs) == 2 and jobs[0].request_cpus == 4 and jobs[0].email == "me@lab.org" and jobs[0].name == "old"
    lines = built.text.splitlines()
    assert lines[1] == "# replaced on the command line: request_cpus = 1"
    assert lines[3:6] == ["request_cpus = 4", "email = me@lab.org", "queue = 2"]


def test_append_errors_name_the_option_and_the_files_own_lines_keep_their_numbers():
    built = append_to(FILE, append_pairs(["request_gpus=lots"]))
    with pytest.raises(SubmissionError) as bad:
        parse_submission(built.text, "job.txt")
    assert built.explain(bad.value) == "-a request_gpus=lots: request_gpus must be a whole number, got 'lots'"
    broken = append_to(FILE.replace("queue = 2", "queue = many"), append_pairs(["name=x"]))
    with pytest.raises(SubmissionError) as bad:
        parse_submission(broken.text, "job.txt")
    assert broken.explain(bad.value) == "job.txt:4: queue must be a whole number, got 'many'"


def test_append_needs_a_key():
    for text in ("cpus", "=4", "two words=1"):
        with pytest.raises(ValueError, match=f"^-a {text}: write -a KEY=VALUE"):
            append_pairs([text])


def test_without_options_the_file_is_unchanged():
    assert append_to(FILE, []).text == FILE


@pytest.mark.parametrize("brk", ["\n", "\r", "\u2028", "\x0b", "\x85"])
def test_no_line_break_of_any_kind_can_add_a_key(brk):
    with pytest.raises(ValueError, match="a value is one line"):
        append_to(FILE, append_pairs([f"name=x{brk}executable = other.sh"]))


def test_the_options_after_a_submission_file_override_its_keys(tmp_path):
    (tmp_path / "job.txt").write_text(FILE)
    (source,) = Command().sources(parse([str(tmp_path / "job.txt"), "--cpus", "4", "-a", "name=new"]))
    job = parse_submission(source.built.text, source.name).jobs[0]
    assert (job.request_cpus, job.name, source.folder) == (4, "new", tmp_path)


def test_script_runs_one_program_and_it_must_exist(tmp_path):
    from django.core.management import CommandError

    (tmp_path / "a.sh").write_text("#!/bin/sh\n")
    with pytest.raises(CommandError, match=r"^--script runs one program; 2 were given"):
        Command().sources(parse(["--script", str(tmp_path / "a.sh"), str(tmp_path / "a.sh")]))
    with pytest.raises(CommandError, match=r"b\.sh: no such file; give the path of the program to run$"):
        Command().sources(parse(["--script", str(tmp_path / "b.sh")]))
    (source,) = Command().sources(parse(["--script", str(tmp_path / "a.sh"), "--gpus", "1"]))
    assert source.built.text == "executable = a.sh\nrequest_gpus = 1\n" and source.folder == tmp_path


def test_relative_paths_start_from_the_callers_folder(tmp_path, settings):
    settings.DCT_CALLER_DIR = tmp_path
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "job.txt").write_text(FILE)
    (source,) = Command().sources(parse(["sub/job.txt"]))
    assert (source.name, source.folder) == ("sub/job.txt", tmp_path / "sub")
