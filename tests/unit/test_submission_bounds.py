"""Attacks on the submission parser: loader variables, padding, huge numbers, odd digits, long names.

Each bad value is refused with a located message before anything is stored;
nothing here may raise anything but SubmissionError (an OverflowError or a
ValueError from int() would be a 500 in the API).
"""

from __future__ import annotations

import shlex

import pytest

from dctoolkit.jobs import jobenv
from dctoolkit.jobs.intake.parse import MAX_SUBMISSION_BYTES, SubmissionError, parse_submission
from dctoolkit.lib.units import UnitError, format_mb, format_seconds, parse_duration, parse_size_mb
from dctoolkit.lib.words import QuotingError, split_words


def error_of(text: str) -> str:
    with pytest.raises(SubmissionError) as info:
        parse_submission(text)
    return str(info.value)


LOADER_REFUSAL = (
    "may not be set by a job: it makes programs load code the job names; set it inside your job's script instead"
)


@pytest.mark.parametrize(
    "name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "ld_audit", "GCONV_PATH", "GLIBC_TUNABLES", "MALLOC_CHECK_"]
)
def test_a_loader_variable_in_the_environment_is_refused_by_name(name):
    text = f'executable = fit.py\nenvironment = "A=1 {name}=/storage/evil.so"\n'
    assert error_of(text) == f"job.txt:2: '{name}' {LOADER_REFUSAL}"


def test_the_ld_preload_escape_padded_past_the_cap_is_refused_before_any_splitting():
    # The attack of the issue: LD_PRELOAD plus ~300 KB of padding so the warm sandbox refuses the message.
    padding = " ".join(f"P{i}={'x' * 1000}" for i in range(300))
    text = f'executable = fit.py\nenvironment = "LD_PRELOAD=/tmp/x.so {padding}"\n'
    message = error_of(text)
    assert message.startswith("job.txt:2: environment and arguments take 30")
    assert message.endswith("bytes; the limit is 65,536 (64 KB) together; pass big inputs as a data file")


def test_padding_just_under_the_cap_is_accepted_and_just_over_is_refused():
    room = jobenv.MAX_ENV_AND_ARGS_BYTES - len('"A="')
    ok = parse_submission(f'executable = fit.py\nenvironment = "A={"x" * room}"\n')
    assert len(ok.jobs[0].environment["A"]) == room
    assert jobenv.job_env_problem(ok.jobs[0].environment, ok.jobs[0].arguments) is None
    assert "the limit is 65,536" in error_of(f'executable = fit.py\nenvironment = "A={"x" * (room + 1)}"\n')


def test_environment_and_arguments_count_together():
    half = "x" * 40_000
    text = f"executable = fit.py\nenvironment = A={half}\narguments = {half}\n"
    assert error_of(text) == (
        "job.txt:2: environment and arguments take 80,002 bytes; the limit is 65,536 (64 KB) together; "
        "pass big inputs as a data file"
    )


def test_many_short_words_are_measured_again_after_splitting():
    # 'a b c ...' takes as many bytes as words as it does written: right at the cap it must still hold.
    text = "executable = fit.py\narguments = " + "ab " * 21_845 + "a\n"
    message = error_of(text)
    assert message.startswith("job.txt:2: environment and arguments take 65,537 bytes")


def test_a_60kb_environment_value_parses_in_both_htcondor_syntaxes():
    big = "x" * 60_000
    new = f"\"A={big} B='two words' C=q\"\"uote D='it''s'\""
    job = parse_submission(f"executable = fit.py\nenvironment = {new}\n").jobs[0]
    assert job.environment == {"A": big, "B": "two words", "C": 'q"uote', "D": "it's"}
    old = parse_submission(f"executable = fit.py\nenvironment = A={big};B=two words\n").jobs[0]
    assert old.environment == {"A": big, "B": "two words"}


@pytest.mark.parametrize(
    "text",
    ["a b", "  a\t'b c'  ", '"a\\\\b" c\\ d', "'' x", 'a"b"c', '"it\'s"', "a\\'b", '"\\a"', 'x="1 2"'],
)
def test_the_linear_splitter_agrees_with_shlex(text):
    assert split_words(text) == shlex.split(text)


@pytest.mark.parametrize(("text", "message"), [("'open", "No closing quotation"), ("a\\", "No escaped character")])
def test_the_linear_splitter_refuses_what_shlex_refuses(text, message):
    with pytest.raises(QuotingError, match=message):
        split_words(text)


def test_a_submission_file_over_1mb_is_refused():
    text = "executable = fit.py\n" + "# padding\n" * (MAX_SUBMISSION_BYTES // 10)
    assert error_of(text) == (
        f"job.txt:1: the submission file is {len(text):,} bytes; the limit is 1,048,576 (1 MB); "
        "put long lists and big values in a data file the job reads"
    )


DIGITS_400 = "9" * 400
SHOWN = "9" * 40 + "… (400 characters)"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            f"max_runtime = {DIGITS_400}",
            f"job.txt:2: '{SHOWN}' is longer than the longest duration, 365d; write it like 2h or 30d",
        ),
        ("max_runtime = 366d", "job.txt:2: '366d' is longer than the longest duration, 365d; write it like 2h or 30d"),
        (
            f"request_memory = {DIGITS_400}",
            f"job.txt:2: '{SHOWN}' is more than the largest size, 1024TB; ask for what the job needs, like 4GB",
        ),
        (
            f"request_memory = {DIGITS_400}.5TB",
            "job.txt:2: '" + "9" * 40 + "… (404 characters)' is more than the largest size, 1024TB; "
            "ask for what the job needs, like 4GB",
        ),
        ("client = ²", "job.txt:2: '²' is not a node name; write client = 2 (for node-2) or node = NAME"),
        (
            "client = " + "7" * 5000,
            "job.txt:2: '" + "7" * 40 + "… (5,000 characters)' is not a node name; "
            "write client = 2 (for node-2) or node = NAME",
        ),
        ("queue = ²", "job.txt:2: queue must be a whole number, got '²'"),
        ("queue = ٣", "job.txt:2: queue must be a whole number, got '٣'"),
        ("queue = " + "9" * 5000, "job.txt:2: queue has 5,000 digits, which is out of range; use 0 to 100000"),
        ("queue = 99999999999999999", "job.txt:2: queue = 99999999999999999 is out of range; use 0 to 100000"),
        ("request_cpus = " + "9" * 400, "job.txt:2: request_cpus has 400 digits, which is out of range; use 1 to 1024"),
        ("request_gpus = ¹", "job.txt:2: request_gpus must be a whole number, got '¹'"),
    ],
)
def test_a_bad_number_is_a_located_error(line, message):
    assert error_of(f"executable = fit.py\n{line}\n") == message


def test_a_year_is_the_longest_runtime_and_2_is_still_node_2():
    job = parse_submission("executable = fit.py\nmax_runtime = 365d\nclient = 2\n").jobs[0]
    assert (job.max_runtime_seconds, job.node) == (365 * 86400, "node-2")


def test_a_file_name_over_255_bytes_is_refused_where_it_is_named():
    long = "é" * 130 + ".csv"  # 264 bytes, 134 characters
    assert error_of(f"executable = fit.py\ndata = {long}\n") == (
        f"job.txt:2: the data file name '{long[:40]}… (134 characters)' is 264 bytes; "
        "the limit is 255 bytes; rename the file"
    )


@pytest.mark.parametrize("text", [DIGITS_400, "1" + "0" * 309 + "TB"])
def test_units_never_overflow(text):
    with pytest.raises(UnitError):
        parse_size_mb(text)
    with pytest.raises(UnitError):
        parse_duration(text)


def test_a_stored_infinity_still_formats():
    # Rows written before these bounds may hold inf; a page must still show them.
    assert format_seconds(float("inf")) == "-"
    assert format_mb(float("nan")) == "-"
