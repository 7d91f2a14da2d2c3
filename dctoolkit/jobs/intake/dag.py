"""HTCondor DAGMan's input file language, as `condor_submit_dag` reads it: nodes, edges and what each node does.

Pure: no file system, no Django.  Whether a node's submit file exists comes in as a callable, so that the
parser stays testable alone.  Every problem of a file is reported at once (at most MAX_PROBLEMS), each as
`FILE:LINE: what — how to fix`, through the submission parser's one error type.

    JOB name submit-file [DIR d] [NOOP] [DONE]      FINAL name submit-file [DIR d] [NOOP]
    PARENT a b CHILD c d                             RETRY name N [UNLESS-EXIT v]
    VARS name [PREPEND|APPEND] key="value" ...       SCRIPT [DEFER status seconds] PRE|POST name exe args...
    PRE_SKIP name exit-code                          ABORT-DAG-ON name value [RETURN r]
    CATEGORY name category                           MAXJOBS category N
    PRIORITY name p

`ALL_NODES` stands for every node (except the FINAL one) where DAGMan allows it: SCRIPT, PRE_SKIP, RETRY,
ABORT-DAG-ON, VARS, PRIORITY, CATEGORY.  CONFIG, DOT, NODE_STATUS_FILE, JOBSTATE_LOG, SET_JOB_ATTR and
ENV are accepted and not used (a note says so); SPLICE, SUBDAG, INCLUDE and the rest are refused.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dctoolkit.jobs.intake.parse import MAX_SUBMISSION_BYTES, SubmissionError, submission_too_big_message

ALL_NODES = "ALL_NODES"
# Keywords DAGMan reads that change nothing here (a lab's DAG file keeps them): each gets a note.
IGNORED = {
    "CONFIG": "DAGMan's own configuration file is not used; dctoolkit's scheduler runs the DAG",
    "DOT": "no dot file is written; './dct dag ID' and the DAG's page in the portal draw the graph",
    "NODE_STATUS_FILE": "no node status file is written; './dct dag ID --json' shows each node's state",
    "JOBSTATE_LOG": "no job state log is written; './dct dag ID --json' shows each node's state",
    "SET_JOB_ATTR": "job attributes of the DAGMan job itself are not used",
    "ENV": "the DAGMan job's environment is not used; set `environment` in the node's submit file",
}
REFUSED = {
    "SPLICE": "splices are not supported — write the spliced DAG's nodes into this file",
    "SUBDAG": "nested DAGs (SUBDAG EXTERNAL) are not supported — submit the inner DAG on its own, or "
    "write its nodes into this file",
    "INCLUDE": "INCLUDE is not supported — write the included lines into this file",
    "SERVICE": "SERVICE nodes are not supported — run the service as a job of its own",
    "PROVISIONER": "PROVISIONER nodes are not supported",
    "REJECT": "the file says REJECT: DAGMan refuses to run it — remove the line to run it",
    "CONNECT": "splice connections are not supported (no SPLICE)",
    "PIN_IN": "splice pins are not supported (no SPLICE)",
    "PIN_OUT": "splice pins are not supported (no SPLICE)",
    "MAXIDLE": "not available — use MAXJOBS with a CATEGORY",
    "SAVE_POINT_FILE": "save point files are not supported — './dct dag ID --rerun' runs again what did not succeed",
}
KEYWORDS = (
    "JOB",
    "FINAL",
    "PARENT",
    "RETRY",
    "VARS",
    "SCRIPT",
    "PRE_SKIP",
    "ABORT-DAG-ON",
    "CATEGORY",
    "MAXJOBS",
    "PRIORITY",
    *IGNORED,
    *REFUSED,
)
# A file's problems reported at once (the submission parser's limit).
MAX_PROBLEMS = 20
MAX_NODES = 10_000
_NAME = re.compile(r"^[^\s+\"'=]+$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_JOB_LINE = re.compile(r"^\s*(JOB|FINAL)\s+[^\s=]+\s+[^\s=]", re.IGNORECASE | re.MULTILINE)
# DAGMan's own names in a script's arguments, replaced when the script runs.
SCRIPT_MACROS = ("$JOB", "$RETRY", "$MAX_RETRIES", "$RETURN", "$JOBID", "$PRE_SCRIPT_RETURN")


@dataclass(frozen=True)
class Script:
    """A PRE or POST script: its program (relative to the node's DIR), its words, DEFER's status and delay."""

    executable: str
    arguments: tuple[str, ...]
    line: int
    defer_status: int | None = None
    defer_seconds: int = 0


@dataclass(frozen=True)
class Node:
    """One JOB (or FINAL) of a DAG file, with everything the other lines say about it."""

    name: str
    submit_file: str
    line: int
    directory: str = ""
    noop: bool = False
    done: bool = False
    is_final: bool = False
    retries: int = 0
    unless_exit: int | None = None
    variables: tuple[tuple[str, str], ...] = ()
    pre: Script | None = None
    post: Script | None = None
    pre_skip: int | None = None
    abort_on: int | None = None
    abort_return: int | None = None
    category: str = ""
    priority: int = 0
    parents: tuple[str, ...] = ()

    def submit_path(self) -> str:
        """The submit file's path relative to the DAG file's folder."""
        return join_path(self.directory, self.submit_file)


@dataclass(frozen=True)
class Dag:
    """A parsed DAG file: its nodes in the file's order (the FINAL one last), category limits, notes."""

    source: str
    nodes: tuple[Node, ...]
    max_jobs: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[tuple[int, str], ...] = ()

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def is_dag(text: str) -> bool:
    """Whether a file is a DAG file (it has `JOB name file` or `FINAL name file` lines), not a submit file."""
    return bool(_JOB_LINE.search(text))


def join_path(directory: str, name: str) -> str:
    """`name` inside `directory` (DAGMan's DIR), unless it is absolute."""
    if not directory or name.startswith("/"):
        return name
    return f"{directory.rstrip('/')}/{name}"


class _Reader:
    def __init__(self, source: str, exists: Callable[[str], bool] | None) -> None:
        self.source = source
        self.exists = exists
        self.nodes: dict[str, Node] = {}
        self.names_lower: dict[str, str] = {}
        self.edges: list[tuple[str, str, int]] = []
        self.later: list[tuple[int, str, list[str], str]] = []  # per-node lines, applied once every JOB is known
        self.max_jobs: dict[str, int] = {}
        self.problems: list[tuple[int, str]] = []
        self.notes: list[tuple[int, str]] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def run(self, text: str) -> None:
        for number, raw in enumerate(text.splitlines(), start=1):
            words = raw.split()
            if not words or words[0].startswith("#"):
                continue
            self.statement(number, words, raw)
        for number, keyword, words, raw in self.later:
            self.apply(number, keyword, words, raw)
        self.check_edges()

    def statement(self, line: int, words: list[str], raw: str) -> None:
        keyword = words[0].upper()
        if keyword in ("JOB", "FINAL"):
            self.job(line, keyword, words[1:])
        elif keyword == "PARENT":
            self.parent(line, words[1:])
        elif keyword == "MAXJOBS":
            self.maxjobs(line, words[1:])
        elif keyword in ("RETRY", "VARS", "SCRIPT", "PRE_SKIP", "ABORT-DAG-ON", "CATEGORY", "PRIORITY"):
            self.later.append((line, keyword, words[1:], raw))
        elif keyword in IGNORED:
            self.notes.append((line, f"{keyword} accepted and not used: {IGNORED[keyword]}"))
        elif keyword in REFUSED:
            self.problem(line, f"{keyword}: {REFUSED[keyword]}")
        else:
            close = difflib.get_close_matches(keyword, KEYWORDS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"DAG files know {', '.join(KEYWORDS[:11])}"
            self.problem(line, f"unknown DAG keyword '{words[0]}' — {hint}")

    def job(self, line: int, keyword: str, args: list[str]) -> None:
        usage = f"write {keyword} NAME SUBMIT-FILE [DIR FOLDER] [NOOP]" + (" [DONE]" if keyword == "JOB" else "")
        if len(args) < 2:
            self.problem(line, f"{keyword} needs a node name and a submit file — {usage}")
            return
        name, submit = args[0], args[1]
        if submit == "{":
            self.problem(line, f"{keyword} {name}: inline submit descriptions are not supported — put it in a file")
            return
        if not self.good_name(line, name):
            return
        node = Node(name=name, submit_file=submit, line=line, is_final=keyword == "FINAL")
        rest = args[2:]
        while rest:
            word = rest.pop(0).upper()
            if word == "DIR" and rest:
                node = replace(node, directory=rest.pop(0))
            elif word == "NOOP":
                node = replace(node, noop=True)
            elif word == "DONE" and keyword == "JOB":
                node = replace(node, done=True)
            else:
                self.problem(line, f"{keyword} {name}: unexpected '{word}' — {usage}")
                return
        self.add_node(line, node)

    def good_name(self, line: int, name: str) -> bool:
        if name.upper() in (ALL_NODES, "PARENT", "CHILD"):
            self.problem(line, f"'{name}' is a DAGMan keyword and cannot name a node — choose another name")
            return False
        if not _NAME.match(name):
            self.problem(line, f"node name '{name}' may not contain '+', quotes or '=' — choose another name")
            return False
        if name in self.nodes:
            first = self.nodes[name].line
            self.problem(line, f"node '{name}' is defined twice (first on line {first}) — give each node its own name")
            return False
        return True

    def add_node(self, line: int, node: Node) -> None:
        if node.is_final and any(n.is_final for n in self.nodes.values()):
            first = next(n for n in self.nodes.values() if n.is_final)
            self.problem(line, f"a DAG has one FINAL node; '{first.name}' is FINAL already (line {first.line})")
            return
        if len(self.nodes) >= MAX_NODES:
            self.problem(line, f"more than {MAX_NODES:,} nodes — split the work into several DAGs")
            return
        if self.exists is not None and not node.noop and not self.exists(node.submit_path()):
            self.problem(line, f"submit file '{node.submit_path()}' not found — check the name and DIR")
        self.nodes[node.name] = node
        self.names_lower[node.name.lower()] = node.name

    def parent(self, line: int, args: list[str]) -> None:
        upper = [a.upper() for a in args]
        if "CHILD" not in upper:
            self.problem(line, "PARENT needs CHILD — write PARENT A B CHILD C D")
            return
        at = upper.index("CHILD")
        parents, children = args[:at], args[at + 1 :]
        if not parents or not children:
            self.problem(line, "PARENT ... CHILD needs a node on each side — write PARENT A B CHILD C D")
            return
        self.edges += [(p, c, line) for p in parents for c in children]

    def maxjobs(self, line: int, args: list[str]) -> None:
        if len(args) != 2 or not _is_int(args[1]) or int(args[1]) < 0:
            self.problem(line, "write MAXJOBS CATEGORY N, N a whole number (0: no limit)")
            return
        self.max_jobs[args[0]] = int(args[1])

    def targets(self, line: int, keyword: str, name: str) -> list[Node]:
        if name.upper() == ALL_NODES:
            return [n for n in self.nodes.values() if not n.is_final]
        node = self.nodes.get(name)
        if node is None:
            self.problem(line, f"{keyword}: no node '{name}'{self.did_you_mean(name)}")
            return []
        return [node]

    def did_you_mean(self, name: str) -> str:
        if name.lower() in self.names_lower:
            return f" — did you mean '{self.names_lower[name.lower()]}'? (node names are case-sensitive)"
        close = difflib.get_close_matches(name, list(self.nodes), n=1)
        return f" — did you mean '{close[0]}'?" if close else " — define it with a JOB line"

    def apply(self, line: int, keyword: str, args: list[str], raw: str) -> None:
        if keyword == "SCRIPT":
            self.script(line, args)
            return
        if not args:
            self.problem(line, f"{keyword} needs a node name — {USAGE[keyword]}")
            return
        # VARS values keep their spaces: they are read from the line as written.
        rest = raw.strip().split(None, 2)[2] if keyword == "VARS" and len(args) > 1 else " ".join(args[1:])
        changes = self.changes(line, keyword, args[1:], rest)
        if changes is None:
            return
        for node in self.targets(line, keyword, args[0]):
            if keyword == "VARS":
                changes = {"variables": _merged(node.variables, changes["variables"])}
            self.nodes[node.name] = replace(node, **changes)

    def changes(self, line: int, keyword: str, args: list[str], rest: str) -> dict[str, Any] | None:
        """What a per-node line sets, or None (with a problem) when it is malformed."""
        try:
            if keyword == "RETRY":
                return _retry(args)
            if keyword == "VARS":
                return {"variables": parse_vars(rest)}
            if keyword == "PRE_SKIP":
                return {"pre_skip": _one_int(args)}
            if keyword == "ABORT-DAG-ON":
                return _abort(args)
            if keyword == "CATEGORY":
                if len(args) != 1:
                    raise ValueError("one category name")
                return {"category": args[0]}
            return {"priority": _one_int(args)}  # PRIORITY
        except ValueError as exc:
            self.problem(line, f"{keyword}: {exc} — {USAGE[keyword]}")
            return None

    def script(self, line: int, args: list[str]) -> None:
        defer: tuple[int | None, int] = (None, 0)
        upper = [a.upper() for a in args]
        if upper[:1] == ["DEFER"]:
            if len(args) < 3 or not _is_int(args[1]) or not _is_int(args[2]) or int(args[2]) < 0:
                self.problem(line, f"SCRIPT DEFER needs an exit status and a delay in seconds — {USAGE['SCRIPT']}")
                return
            defer, args, upper = (int(args[1]), int(args[2])), args[3:], upper[3:]
        if upper[:1] == ["DEBUG"]:
            self.problem(line, "SCRIPT DEBUG is not supported — the script's job keeps its stdout and stderr")
            return
        if len(args) < 3 or upper[0] not in ("PRE", "POST"):
            what = "HOLD scripts are not supported" if upper[:1] == ["HOLD"] else "needs PRE or POST, a node, a program"
            self.problem(line, f"SCRIPT {what} — {USAGE['SCRIPT']}")
            return
        script = Script(args[2], tuple(args[3:]), line, defer_status=defer[0], defer_seconds=defer[1])
        for node in self.targets(line, "SCRIPT", args[1]):
            changed = replace(node, pre=script) if upper[0] == "PRE" else replace(node, post=script)
            self.nodes[node.name] = changed

    def check_edges(self) -> None:
        parents: dict[str, list[str]] = {name: [] for name in self.nodes}
        for parent, child, line in self.edges:
            known = True
            for name in (parent, child):
                if name not in self.nodes:
                    self.problem(line, f"PARENT/CHILD: no node '{name}'{self.did_you_mean(name)}")
                    known = False
            if not known:
                continue
            final = next((n for n in (parent, child) if self.nodes[n].is_final), None)
            if final:
                self.problem(line, f"FINAL node '{final}' cannot be a PARENT or CHILD — it runs after every other node")
            elif parent == child:
                self.problem(line, f"node '{parent}' cannot be its own parent — remove it from one side")
            elif parent not in parents[child]:
                parents[child].append(parent)
        for name, own in parents.items():
            self.nodes[name] = replace(self.nodes[name], parents=tuple(own))
        cycle = find_cycle({name: node.parents for name, node in self.nodes.items()})
        if cycle:
            line = self.nodes[cycle[0]].line
            self.problem(line, f"the DAG has a cycle: {' -> '.join(cycle)} — remove one of these PARENT/CHILD edges")


USAGE = {
    "RETRY": "write RETRY NODE N [UNLESS-EXIT VALUE]",
    "VARS": 'write VARS NODE name="value" ...',
    "SCRIPT": "write SCRIPT [DEFER STATUS SECONDS] PRE|POST NODE PROGRAM [ARGUMENTS]",
    "PRE_SKIP": "write PRE_SKIP NODE EXIT-CODE",
    "ABORT-DAG-ON": "write ABORT-DAG-ON NODE VALUE [RETURN CODE]",
    "CATEGORY": "write CATEGORY NODE CATEGORY",
    "PRIORITY": "write PRIORITY NODE N",
}


def parse_dag(text: str, source: str = "pipeline.dag", exists: Callable[[str], bool] | None = None) -> Dag:
    """Read a DAG file.  `exists(path)` says whether a submit file (relative to the DAG's folder) is there;
    None skips that check.  Raises SubmissionError naming every problem (at most MAX_PROBLEMS)."""
    if len(text.encode()) > MAX_SUBMISSION_BYTES:
        raise SubmissionError(source, 1, submission_too_big_message(len(text.encode())))
    reader = _Reader(source, exists)
    reader.run(text)
    if not reader.nodes and not reader.problems:
        reader.problem(1, "the DAG has no JOB line — write JOB NAME SUBMIT-FILE for each node")
    if reader.problems:
        raise SubmissionError.of(source, sorted(reader.problems, key=lambda p: p[0]))
    nodes = sorted(reader.nodes.values(), key=lambda n: (n.is_final, n.line))
    return Dag(source=source, nodes=tuple(nodes), max_jobs=dict(reader.max_jobs), notes=tuple(reader.notes))


def parse_vars(text: str) -> tuple[tuple[str, str], ...]:
    """`key="value" key2="v \\"q\\""` as DAGMan reads VARS: each value in double quotes, `\\"` a quote and
    `\\\\` a backslash inside.  A leading PREPEND or APPEND is accepted (it only orders the macros).
    Raises ValueError saying what is wrong."""
    text = text.strip()
    first = text.split(None, 1)[0].upper() if text else ""
    if first in ("PREPEND", "APPEND"):
        text = text[len(first) :].strip()
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        match = re.compile(r"\s*([^\s=]+)\s*=\s*").match(text, i)
        if not match:
            raise ValueError(f"cannot read '{text[i:].strip()}' as name=\"value\"")
        name, i = match.group(1), match.end()
        if not _VAR_NAME.match(name) or name.lower().startswith("queue"):
            raise ValueError(f"'{name}' cannot name a macro (letters, digits, '_' and '.'; not queue...)")
        if i >= len(text) or text[i] != '"':
            raise ValueError(f'the value of {name} must be in double quotes: {name}="..."')
        value, i = _quoted_value(text, i + 1, name)
        pairs.append((name, value))
        if i < len(text) and not text[i].isspace():
            raise ValueError(f"put a space after {name}'s closing quote")
    if not pairs:
        raise ValueError('no name="value" pair')
    return tuple(pairs)


def _quoted_value(text: str, i: int, name: str) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise ValueError(f"the value of {name} has no closing double quote")


def _merged(old: tuple[tuple[str, str], ...], new: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    # A later VARS line sets a name again: its value wins, as the later macro definition does in HTCondor.
    merged = dict(old)
    merged.update(new)
    return tuple(merged.items())


def _retry(args: list[str]) -> dict[str, Any]:
    if not args or not _is_int(args[0]) or int(args[0]) < 0:
        raise ValueError("the number of retries must be a whole number, 0 or more")
    changes: dict[str, Any] = {"retries": int(args[0])}
    rest = args[1:]
    if rest:
        if rest[0].upper() != "UNLESS-EXIT" or len(rest) != 2 or not _is_int(rest[1]):
            raise ValueError(f"unexpected '{' '.join(rest)}'")
        changes["unless_exit"] = int(rest[1])
    return changes


def _abort(args: list[str]) -> dict[str, Any]:
    if not args or not _is_int(args[0]):
        raise ValueError("the exit value must be a whole number")
    changes: dict[str, Any] = {"abort_on": int(args[0])}
    rest = args[1:]
    if rest:
        if rest[0].upper() != "RETURN" or len(rest) != 2 or not _is_int(rest[1]) or not 0 <= int(rest[1]) <= 255:
            raise ValueError(f"unexpected '{' '.join(rest)}' (RETURN takes 0 to 255)")
        changes["abort_return"] = int(rest[1])
    return changes


def _one_int(args: list[str]) -> int:
    if len(args) != 1 or not _is_int(args[0]):
        raise ValueError("one whole number")
    return int(args[0])


def _is_int(word: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d{1,9}", word))


def find_cycle(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """A cycle of the graph (`node -> its parents`) as the path parent -> ... -> the same parent, or []."""
    children: dict[str, list[str]] = {name: [] for name in parents}
    for name, own in parents.items():
        for parent in own:
            children.setdefault(parent, []).append(name)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for start, below in children.items():
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(below))]
        state[start] = 1
        path.append(start)
        while stack:
            name, rest = stack[-1]
            nxt = next(iter(rest), None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[name] = 2
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(children.get(nxt, []))))
    return []


def topological(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """The nodes parents first (file order among equals); a node on a cycle (never accepted) comes last."""
    waiting_on = {name: len(set(own)) for name, own in parents.items()}
    children: dict[str, list[str]] = {name: [] for name in parents}
    for name, own in parents.items():
        for parent in set(own):
            children.setdefault(parent, []).append(name)
    ready = deque(name for name, count in waiting_on.items() if count == 0)
    order: list[str] = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for child in children.get(name, []):
            waiting_on[child] -= 1
            if waiting_on[child] == 0:
                ready.append(child)
    seen = set(order)
    return order + [name for name in parents if name not in seen]


def layers(parents: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The nodes in layers for drawing: each node one layer below its deepest parent (file order within)."""
    depth: dict[str, int] = {}
    for name in topological(parents):
        depth[name] = 1 + max((depth.get(p, -1) for p in parents.get(name, ()) if p in depth), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in parents:
        out[depth[name]].append(name)
    return out


def script_words(script: Script, values: Mapping[str, str]) -> list[str]:
    """The script's program and arguments with DAGMan's `$JOB $RETRY $MAX_RETRIES $RETURN $JOBID
    $PRE_SCRIPT_RETURN` replaced by `values` (keys without the `$`)."""

    def fill(word: str) -> str:
        return re.sub(
            r"\$(PRE_SCRIPT_RETURN|MAX_RETRIES|RETRY|RETURN|JOBID|JOB)",
            lambda m: values.get(m.group(1), m.group(0)),
            word,
        )

    return [fill(word) for word in script.arguments]
