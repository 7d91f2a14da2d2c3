"""Selectors of cancel / hold / release: ids, ranges and name globs (pure)."""

import re

import pytest

from dctoolkit.jobs.selection import SelectionError, glob_pattern, parse_ids, parse_state


def test_ids_and_ranges_come_apart_and_commas_separate_too():
    assert parse_ids(["12", "100-199", "3,4", " 7 - 9 "]) == ((12, 3, 4), ((100, 199), (7, 9)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-3", "'9-3' is not a range of job ids; write FIRST-LAST, e.g. 100-199"),
        ("12x", "'12x' is not a job id; job ids are numbers, as './dct jobs' shows, or ranges such as 100-199"),
        ("1-99999999999999999999", "'1-99999999999999999999' is not a job id"),
    ],
)
def test_a_bad_id_is_refused_naming_it(text, message):
    with pytest.raises(SelectionError) as refused:
        parse_ids([text])
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("fit-*", ["fit-", "fit-12"], ["prefit-1", "fit"]),
        ("a?c", ["abc"], ["ac", "abbc"]),
        ("run[12]", ["run1", "run2"], ["run3"]),
        ("run[!1]", ["run2"], ["run1"]),
        ("a.b+(c)", ["a.b+(c)"], ["axb+(c)"]),
        ("x[", ["x["], ["x"]),
    ],
)
def test_a_glob_matches_the_whole_name_as_a_shell_would(glob, matches, misses):
    pattern = re.compile(glob_pattern(glob))
    assert all(pattern.search(m) for m in matches)
    assert not any(pattern.search(m) for m in misses)


def test_a_state_is_one_of_the_life_cycle_words():
    assert parse_state("Queued") == "queued"
    with pytest.raises(SelectionError, match="--state done: no such state; choose from waiting, queued, held"):
        parse_state("done")
