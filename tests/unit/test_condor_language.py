"""HTCondor's submit language alone (intake/condor.py): statements, macros, queue forms, the two syntaxes.

Expected values for how queue lists split were taken from `htcondor2.Submit(...).itemdata()` of the
`htcondor` 25.14.1 wheel; argument and environment examples are the condor_submit manual page's own.
"""

import re

import pytest

from dctoolkit.jobs.intake import condor
from dctoolkit.jobs.intake.condor import LanguageError


def plan(args, inline=None, files=None, names=()):
    def read(path):
        if files is None or path not in files:
            raise LanguageError(f"no {path}")
        return files[path]

    return condor.plan_queue(args, inline, read, lambda: names)


@pytest.mark.parametrize(
    ("value", "argv"),
    [
        ('"3 simple arguments"', ["3", "simple", "arguments"]),
        ("\"one 'two with spaces' 3\"", ["one", "two with spaces", "3"]),
        ("\"one \"\"two\"\" 'spacey ''quoted'' argument'\"", ["one", '"two"', "spacey 'quoted' argument"]),
        ('"a\\b c"', ["a\\b", "c"]),  # a backslash is ordinary in the new syntax
        ("\"''\"", [""]),
        ("one two  three", ["one", "two", "three"]),  # old syntax: blanks separate
        ('one \\"two\\" 3', ["one", '"two"', "3"]),  # old syntax: \" is a double quote
        ("a 'b c'", ["a", "'b", "c'"]),  # old syntax: quotes do not group
    ],
)
def test_arguments_split_as_condor_submit_splits_them(value, argv):
    assert condor.split_arguments(value) == argv


@pytest.mark.parametrize("argv", [["a"], ["two words", "it's", 'say "hi"', ""], ["$(Process)", "--x=1"]])
def test_join_arguments_round_trips(argv):
    assert condor.split_arguments(condor.join_arguments(argv)) == argv


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"open', "must end with '\"'"),
        ('"a \'b"', "a single quote in the arguments is never closed"),
        ('"a " b"', "a lone '\"' inside the arguments"),
    ],
)
def test_bad_new_syntax_arguments_say_what_to_fix(value, message):
    with pytest.raises(LanguageError, match=message):
        condor.split_arguments(value)


def test_environment_in_both_syntaxes():
    new = "\"one=1 two=\"\"2\"\" three='spacey ''quoted'' value'\""
    assert condor.split_environment(new) == ["one=1", 'two="2"', "three=spacey 'quoted' value"]
    old = "one=1;two=2;three=\"quotes have no 'special' meaning\""
    assert condor.split_environment(old) == ["one=1", "two=2", "three=\"quotes have no 'special' meaning\""]


def test_statements_continue_lines_and_take_inline_queue_lists():
    text = "executable = a\narguments = one \\\n  two\nqueue x in (\n  p\n  q\n)\nqueue 2\n"
    statements, problems = condor.read_statements(text)
    assert problems == []
    assert statements == [
        condor.Assignment("executable", "a", 1),
        condor.Assignment("arguments", "one two", 2),
        condor.QueueStatement("x in", ("p", "q"), 4),
        condor.QueueStatement("2", None, 8),
    ]


def test_unsupported_statements_are_named():
    _, problems = condor.read_statements("if defined X\nA = 1\nendif\ninclude : other.sub\nB @= end\n")
    assert [line for line, _ in problems] == [1, 3, 4, 5]
    assert "'if' statements are not supported" in problems[0][1]


@pytest.mark.parametrize(
    ("args", "inline", "count", "rows"),
    [
        ("", None, 1, [()]),
        ("0", None, 0, [()]),
        ("5", None, 5, [()]),
        ("x in (a, b c)", None, 1, [("a",), ("b",), ("c",)]),
        ("x in a, b c", None, 1, [("a",), ("b",), ("c",)]),
        ("2 x in (a b)", None, 2, [("a",), ("b",)]),
        ("x in [::2] (a b c d e)", None, 1, [("a",), ("c",), ("e",)]),
        ("x in", ("a", "b"), 1, [("a",), ("b",)]),
        ("a,b from", ("x1 y1 z1", "x2, y2"), 1, [("x1", "y1 z1"), ("x2", "y2")]),
        ("a b from", ("x1 y1 z1", "x2,y2", "  x3  "), 1, [("x1", "y1 z1"), ("x2", "y2"), ("x3", "")]),
        ("from", ("x1 y1",), 1, [("x1 y1",)]),
        ("a,b from", ('x1\t"y1 q"',), 1, [("x1", '"y1 q"')]),
        ("in (x1, 'y 1' \"z\")", None, 1, [("x1",), ("'y",), ("1'",), ('"z"',)]),
    ],
)
def test_queue_forms_bind_rows_as_htcondor_does(args, inline, count, rows):
    result = plan(args, inline)
    assert (result.count, list(result.rows)) == (count, rows)


def test_queue_from_a_file_skips_blank_and_comment_lines():
    result = plan("state from [1:] states.txt", files={"states.txt": "wi\n\n# not this\nmn\nil\n"})
    assert (result.names, list(result.rows)) == (("state",), [("mn",), ("il",)])


def test_queue_matching_globs_files_and_dirs():
    names = [("b.csv", False), ("a.csv", False), ("c.txt", False), ("d1", True), ("d2.csv", True), (".h.csv", False)]
    assert list(plan("x matching *.csv", names=names).rows) == [("a.csv",), ("b.csv",), ("d2.csv/",)]
    assert list(plan("x matching files *.csv *.txt", names=names).rows) == [("a.csv",), ("b.csv",), ("c.txt",)]
    assert list(plan("x matching dirs *", names=names).rows) == [("d1/",), ("d2.csv/",)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("x from seq 3 |", "runs a program at submission"),
        ("-1", "the count cannot be negative"),
        ("2*3", "write the count as a plain number"),
        ("x y", "after the count comes"),
        ("a, b in (1 2)", "binds one variable"),
        ("x matching ../*.csv", "no '/'"),
        ("x from", "needs a file name"),
    ],
)
def test_bad_queue_statements_say_why(args, message):
    with pytest.raises(LanguageError, match=message):
        plan(args)


def test_macros_expand_with_defaults_env_and_file_parts():
    values = {"base": "run", "name": "$(base)_$(step)", "step": "3", "path": "/data/in/sample.tar.gz"}

    def lookup(name):
        return values.get(name.lower())

    assert condor.expand("$(name).out", lookup, {}) == "run_3.out"
    assert condor.expand("$(missing:fallback)", lookup, {}) == "fallback"
    assert condor.expand("$ENV(HOME)", lookup, {"HOME": "/home/me"}) == "/home/me"
    assert condor.expand("$ENV(NOPE:none)", lookup, {}) == "none"
    assert condor.expand("$Fn(path) $Fx(path) $Fp(path) $Fnx(path)", lookup, {}) == (
        "sample.tar .gz /data/in/ sample.tar.gz"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$(nope)", "'$(nope)' is not defined"),
        ("$$(Memory)", "match-time substitution"),
        ("$ENV(NOPE)", "is not set in the environment"),
        ("$(loop)", "more than 32 deep"),
        ("$INT(x)", "is not supported"),
        ("$SUBSTR(loop)", "write $SUBSTR(NAME, START)"),
        ("$SUBSTR(nope, 1)", "'$(nope)' is not defined"),
    ],
)
def test_macro_problems_say_what_to_do(text, message):
    with pytest.raises(LanguageError, match=re.escape(message)):
        condor.expand(text, {"loop": "$(loop)"}.get, {})


def test_item_index_counts_in_the_list_before_the_slice():
    result = plan("x in [1::2] (a b c d e)")
    assert [(result.item_index(i), row) for i, row in enumerate(result.rows)] == [(1, ("b",)), (3, ("d",))]


def test_macros_that_double_each_other_are_refused_in_linear_time():
    values = {f"m{i}": f"$(m{i + 1})$(m{i + 1})" for i in range(30)}
    values["m30"] = "x" * 10

    with pytest.raises(LanguageError, match="more than 1,048,576 characters"):
        condor.expand("$(m0)", lambda name: values.get(name.lower()), {})


# --- against HTCondor's own submit language (htcondor2.Submit, the `htcondor` wheel) -----------------

ORACLE_QUEUES = [
    "queue x in (a, b c)",
    "queue x in a, b c",
    "queue 2 x in (a b)",
    "queue x in (\n  a\n  b\n)",
    "queue a,b from (\n  x1 y1 z1\n  x2, y2\n)",
    "queue a b from (\n  x1 y1 z1\n  x2,y2\n    x3  \n)",
    "queue from (\n  x1 y1\n)",
    'queue a,b from (\n  x1\t"y1 q"\n)',
    "queue a,b from (\n  x1 ,, y1\n)",
    "queue a,b from (\n  x2 , y2\n  p\tq r\n)",
    "queue a,b,c from (\n  1,2,3\n  4 5\n)",
    "queue in (x1, 'y 1' \"z\")",
    "queue input,arguments from (\n  file1, -a -b 26\n  file2, -c -d 92\n)",
]


@pytest.mark.parametrize("statement", ORACLE_QUEUES)
def test_queue_items_match_htcondor2(statement):
    import htcondor2

    expected = [dict(row) for row in htcondor2.Submit(f"executable = a\n{statement}\n").itemdata()]
    statements, problems = condor.read_statements(statement)
    assert problems == []
    (queue,) = statements
    result = plan(queue.args, queue.inline)
    assert [dict(zip(result.names, row, strict=True)) for row in result.rows] == expected


ORACLE_MACROS = {
    "a1": "$Fn(path) $Fx(path) $Fp(path) $Fnx(path) $Fd(path) $Fq(path) $Fdn(path)",
    "a2": "$(missing:fallback)",
    "a3": "$(name).out",
    "a4": "$(BASE)-$(Base)",
}


@pytest.mark.parametrize("key", sorted(ORACLE_MACROS))
def test_macro_expansion_matches_htcondor2(key):
    import htcondor2

    values = {"path": "/data/in/sample.tar.gz", "base": "run", "step2": "3", "name": "$(base)_$(step2)"}
    text = "".join(f"{k} = {v}\n" for k, v in {**values, **ORACLE_MACROS}.items())
    expected = htcondor2.Submit(f"executable = a\n{text}").expand(key)
    assert condor.expand(ORACLE_MACROS[key], lambda name: values.get(name.lower()), {}) == expected


SUBSTRINGS = [
    "$SUBSTR(novel,0,-4)",
    "$SUBSTR(host,0,5)",
    "$SUBSTR(novel,-3)",
    "$SUBSTR(novel,2)",
    "$SUBSTR(novel, 1, 2)",
]
SUBSTRINGS += ["$SUBSTR(novel,-5,2)", "$SUBSTR(novel,-20,3)", "$SUBSTR(novel,7,5)"]


@pytest.mark.parametrize("text", SUBSTRINGS)
def test_substr_matches_htcondor2(text):
    # As GSDC's school files write it: output = $SUBSTR(NOVEL_FILE,0,-4).out
    import htcondor2

    values = {"novel": "alice.txt", "host": "node2.g0.gsdc.org"}
    given = "".join(f"{k} = {v}\n" for k, v in values.items())
    expected = htcondor2.Submit(f"executable = a\n{given}c = {text}\n").expand("c")
    assert condor.expand(text, lambda name: values.get(name.lower()), {}) == expected


@pytest.mark.parametrize(
    ("value", "remaps"),
    [
        # The geant4 corpus file's form: spaces around '=', ';' between, the whole value in double quotes.
        (
            '"a.out = a_3.out ; b.root=b_3.root; c.root = c_3.root"',
            [("a.out", "a_3.out"), ("b.root", "b_3.root"), ("c.root", "c_3.root")],
        ),
        ("x.html = results/x.html", [("x.html", "results/x.html")]),
        (r"a\=b.txt = c\;d.txt;", [("a=b.txt", "c;d.txt")]),  # a backslash escapes '=' and ';'
        ('""', []),
    ],
)
def test_transfer_output_remaps_split_as_condor_submit_reads_them(value, remaps):
    assert condor.split_remaps(value) == remaps


@pytest.mark.parametrize("value", ["a.txt", "a = b = c", "= b", "a = ; c = d"])
def test_a_remap_that_is_not_name_equals_newname_says_how_to_write_it(value):
    with pytest.raises(LanguageError, match=r"is not 'name = newname'; separate remaps with ';'$"):
        condor.split_remaps(value)
