"""The DAG file parser (DAGMan's language) and the engine's decisions, alone: no database, no processes."""

from pathlib import Path

import pytest

from dctoolkit.jobs.intake.dag import find_cycle, is_dag, layers, parse_dag, parse_vars, script_words
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.scheduling.dagsteps import NodeFacts, NodeRules, after_phase, first_phase, plan_dag

DATA = Path(__file__).parent.parent / "data" / "dag"


def parse(name: str):
    return parse_dag((DATA / name).read_text(), name, exists=lambda p: (DATA / p).is_file())


def problems(text: str, exists=None) -> list[str]:
    with pytest.raises(SubmissionError) as caught:
        parse_dag(text, "p.dag", exists=exists)
    return str(caught.value).splitlines()


def test_the_manual_diamond_has_its_edges_retry_and_vars():
    dag = parse("diamond.dag")
    assert [n.name for n in dag.nodes] == ["A", "B", "C", "D"]
    assert dag.node("D").parents == ("B", "C")
    assert dag.node("B").parents == ("A",)
    assert dag.node("C").retries == 3
    assert dag.node("B").variables == (("state", "B"), ("note", 'a "quoted" word'))


def test_every_keyword_of_a_full_file_is_read():
    dag = parse("full.dag")
    fit = dag.node("fit")
    assert fit.directory == "fits" and fit.submit_path() == "fits/fit.sub"
    assert fit.parents == ("prepare", "skipped")
    assert fit.pre.executable == "check.sh" and fit.pre.arguments == ("$JOB", "$RETRY")
    assert (fit.post.defer_status, fit.post.defer_seconds) == (2, 30)
    assert (fit.retries, fit.unless_exit, fit.priority) == (2, 9, 10)
    assert dag.node("prepare").abort_on == 3 and dag.node("prepare").abort_return == 7
    assert dag.node("skipped").done and dag.node("gather").noop
    assert dag.nodes[-1].name == "cleanup" and dag.nodes[-1].is_final
    assert dag.node("cleanup").category == "", "ALL_NODES leaves out the FINAL node"
    assert dag.node("fit").category == "heavy" and dag.max_jobs == {"heavy": 1}
    assert [line for line, _ in dag.notes] == [1, 16]
    assert "CONFIG accepted and not used" in dag.notes[0][1]


def test_every_problem_of_a_broken_file_is_told_at_once_with_its_line():
    assert problems((DATA / "broken.dag").read_text(), exists=lambda p: (DATA / p).is_file()) == [
        "p.dag:2: node 'A' is defined twice (first on line 1) — give each node its own name",
        "p.dag:3: submit file 'missing.sub' not found — check the name and DIR",
        "p.dag:4: PARENT/CHILD: no node 'c' — define it with a JOB line",
        "p.dag:5: SPLICE: splices are not supported — write the spliced DAG's nodes into this file",
        "p.dag:6: RETRY: the number of retries must be a whole number, 0 or more — "
        "write RETRY NODE N [UNLESS-EXIT VALUE]",
        'p.dag:7: VARS: the value of x must be in double quotes: x="..." — write VARS NODE name="value" ...',
        "p.dag:9: FINAL node 'F' cannot be a PARENT or CHILD — it runs after every other node",
        "p.dag:10: unknown DAG keyword 'JOBS' — did you mean 'JOB'?",
    ]


def test_an_unknown_node_gets_a_did_you_mean():
    assert problems("JOB prepare a.sub\nJOB fit a.sub\nPARENT prepar CHILD fit\n") == [
        "p.dag:3: PARENT/CHILD: no node 'prepar' — did you mean 'prepare'?"
    ]
    assert problems("JOB Fit a.sub\nRETRY fit 2\n") == [
        "p.dag:2: RETRY: no node 'fit' — did you mean 'Fit'? (node names are case-sensitive)"
    ]


def test_a_cycle_is_refused_naming_the_cycle():
    assert problems((DATA / "cycle.dag").read_text()) == [
        "p.dag:1: the DAG has a cycle: A -> B -> C -> A — remove one of these PARENT/CHILD edges"
    ]


def test_subdag_and_inline_submit_descriptions_are_refused_cleanly():
    assert problems("SUBDAG EXTERNAL inner inner.dag\nJOB A {\n") == [
        "p.dag:1: SUBDAG: nested DAGs (SUBDAG EXTERNAL) are not supported — submit the inner DAG on its own, "
        "or write its nodes into this file",
        "p.dag:2: JOB A: inline submit descriptions are not supported — put it in a file",
    ]


def test_keywords_are_case_insensitive_and_comments_skipped():
    dag = parse_dag("# a comment\njob A a.sub\nJob B a.sub\nparent A child B\nretry b 1\n".replace("b 1", "B 1"))
    assert dag.node("B").parents == ("A",) and dag.node("B").retries == 1


def test_vars_read_dagman_quoting():
    assert parse_vars('a="x y"  b="say \\"hi\\"" c="back\\\\slash" d=""') == (
        ("a", "x y"), ("b", 'say "hi"'), ("c", "back\\slash"), ("d", ""),
    )  # fmt: skip
    assert parse_vars('PREPEND a="1"') == (("a", "1"),)
    with pytest.raises(ValueError, match="no closing double quote"):
        parse_vars('a="open')
    with pytest.raises(ValueError, match="cannot name a macro"):
        parse_vars('queue_x="1"')


def test_a_dag_is_told_from_a_submit_file_by_its_job_lines():
    assert is_dag("JOB A a.sub\n")
    assert is_dag("# c\nFINAL F f.sub\n")
    assert not is_dag("executable = a.sh\njob = 3\nqueue\n")


def test_script_words_replace_dagmans_names():
    script = parse("full.dag").node("fit").post
    assert script_words(script, {"JOB": "fit", "RETURN": "1", "JOBID": "12.0", "MAX_RETRIES": "2"}) == [
        "fit", "1", "12.0", "2",
    ]  # fmt: skip


def test_layers_put_each_node_below_its_deepest_parent():
    assert layers({"A": (), "B": ("A",), "C": ("A", "B"), "D": ()}) == [["A", "D"], ["B"], ["C"]]
    assert find_cycle({"A": (), "B": ("A",)}) == []


# --- the engine's decisions -------------------------------------------------------


def facts(**states):
    parents = {"A": (), "B": ("A",), "C": ("A",), "D": ("B", "C")}
    return [NodeFacts(name, state, parents.get(name, ()), is_final=name == "F") for name, state in states.items()]


def test_nodes_start_once_every_parent_succeeded():
    assert plan_dag(facts(A="waiting", B="waiting", C="waiting", D="waiting"), {}).start == ["A"]
    assert plan_dag(facts(A="succeeded", B="waiting", C="waiting", D="waiting"), {}).start == ["B", "C"]
    assert plan_dag(facts(A="succeeded", B="succeeded", C="queued", D="waiting"), {}).start == []


def test_maxjobs_and_priority_choose_which_ready_nodes_start():
    nodes = [NodeFacts(n, "waiting", (), "c", p) for n, p in (("x", 0), ("y", 5), ("z", 1))]
    assert plan_dag(nodes, {"c": 2}).start == ["y", "z"]
    running = [NodeFacts("w", "queued", (), "c"), *nodes]
    assert plan_dag(running, {"c": 2}).start == ["y"]


def test_below_a_failed_node_nothing_runs_and_the_final_node_runs_last():
    plan = plan_dag(facts(A="succeeded", B="failed", C="succeeded", D="waiting", F="waiting"), {})
    assert plan.never == {"D": "parent node B failed: this node never runs"}
    assert plan.start == ["F"] and plan.end is None
    ended = plan_dag(facts(A="succeeded", B="failed", C="succeeded", D="cancelled", F="succeeded"), {})
    assert ended.end.state == "succeeded", "the FINAL node's outcome is the DAG's"
    assert plan_dag(facts(A="succeeded", B="failed", C="succeeded", D="cancelled"), {}).end.state == "failed"


def test_an_aborted_dag_runs_no_more_nodes_and_returns_the_abort_value():
    plan = plan_dag(facts(A="failed", B="waiting", C="waiting", D="waiting"), {}, abort_return=7)
    assert set(plan.never) == {"B", "C", "D"} and plan.end.exit_code == 7 and plan.end.state == "failed"


def test_a_node_runs_pre_then_job_then_post_and_post_decides():
    rules = NodeRules(has_pre=True, has_post=True)
    assert first_phase(rules).phase == "pre"
    assert after_phase(rules, "pre", True, 0, 0, False).phase == "job"
    assert after_phase(rules, "job", False, 3, 0, False).phase == "post", "POST runs after a failed job"
    assert after_phase(rules, "post", True, 0, 0, False).action == "succeed", "POST's exit decides"


def test_retry_unless_exit_and_abort_come_in_dagmans_order():
    rules = NodeRules(max_retries=2, unless_exit=9, abort_on=5, abort_return=1)
    assert after_phase(rules, "job", False, 1, 0, False).action == "retry"
    assert after_phase(rules, "job", False, 1, 2, False).action == "fail"
    assert after_phase(rules, "job", False, 9, 0, False).action == "fail", "UNLESS-EXIT ends the retries"
    abort = after_phase(rules, "job", False, 5, 0, False)
    assert (abort.action, abort.dag_return) == ("abort", 1), "ABORT-DAG-ON before RETRY"


def test_pre_failure_skips_post_and_pre_skip_succeeds_the_node():
    rules = NodeRules(has_pre=True, has_post=True, pre_skip=4)
    assert after_phase(rules, "pre", False, 1, 0, False).action == "fail"
    assert after_phase(rules, "pre", False, 4, 0, False).action == "succeed"


def test_a_deferred_script_runs_again_after_its_delay():
    rules = NodeRules(has_post=True, post_defer=(2, 30))
    nxt = after_phase(rules, "post", False, 2, 0, False)
    assert (nxt.action, nxt.phase, nxt.delay_seconds) == ("run", "post", 30)


def test_a_noop_node_runs_no_job():
    assert first_phase(NodeRules(noop=True)).action == "succeed"
    assert after_phase(NodeRules(has_pre=True, noop=True), "pre", True, 0, 0, False).action == "succeed"


def _calls_to_plan_a_chain(length: int) -> int:
    """Python and builtin calls made to lay out and plan a failed chain of `length` nodes: a count the
    machine's load does not change, unlike a time."""
    import sys

    names = [f"n{i}" for i in range(length)]
    chain = {name: ((names[i - 1],) if i else ()) for i, name in enumerate(names)}
    nodes = [NodeFacts(n, "failed" if n == "n0" else "waiting", chain[n]) for n in names]
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        drawn = layers(chain)
        plan = plan_dag(nodes, {})
    finally:
        sys.setprofile(None)
    assert len(drawn) == length and len(plan.never) == length - 1
    assert plan.never[names[-1]] == f"parent node {names[-2]} can never run: this node never runs"
    return calls


def test_a_long_chain_is_planned_and_drawn_in_linear_time():
    small, large = _calls_to_plan_a_chain(1_000), _calls_to_plan_a_chain(10_000)
    # ten times the nodes: about ten times the calls (a quadratic step would make it a hundred)
    assert large < 12 * small, (small, large)
