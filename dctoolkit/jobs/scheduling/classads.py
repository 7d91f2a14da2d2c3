"""HTCondor's `requirements` and `rank`: ClassAd expressions over a node's attributes, evaluated by HTCondor's
own bindings (`classad2`, from the `htcondor` wheel).

Pure (no Django, Celery or I/O); the check at submit (`intake.parse.check_nodes`), the scheduler's pass
(`dispatch`, through `verdicts`) and the reason a job waits all call these functions, so they never disagree.

What an expression sees, in one ad (HTCondor resolves a name not found in the job's ad in the machine's, so
`Memory >= RequestMemory`, `TARGET.Memory` and `MY.RequestMemory` all work):
  the node's  Machine, Name (its name), Cpus (the CPUs it offers: its slots), Memory (MB), Disk (KB of free
              scratch space), GPUs, OpSys ("LINUX"), Arch, Labels (a list of strings: `member("ib", Labels)`)
              and, for each label, Has_<label> = true;
  the job's   RequestCpus, RequestMemory (MB), RequestDisk (KB), RequestGpus.
A name neither has is UNDEFINED, and an expression that is not true (UNDEFINED, ERROR, false, 0) does not
match, as in HTCondor.  `rank` is a number (higher is better); anything else ranks 0.0.

Each distinct expression is evaluated once per node and job size (an LRU cache keyed by the expression text,
the node's attributes and the job's requests), so a pass over a long queue of one submission costs one
evaluation per node.  `classad2` is imported on first use: `./dct status` never pays for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from dctoolkit.jobs.scheduling.matching import AdAsk, AdVerdict

if TYPE_CHECKING:
    import classad2  # type: ignore[import-untyped]  # (no py.typed in the htcondor wheel)

OPSYS = "LINUX"
# The names a node offers, in the order a message lists them.
NODE_ATTRIBUTES = ("Machine", "Name", "Cpus", "Memory", "Disk", "GPUs", "OpSys", "Arch", "Labels", "Has_<label>")
JOB_ATTRIBUTES = ("RequestCpus", "RequestMemory", "RequestDisk", "RequestGpus")
CACHE_SIZE = 65536


class ExpressionError(ValueError):
    """An expression classad2 cannot read; the message says what and how to fix it."""


@dataclass(frozen=True)
class NodeAttrs:
    """One node as its ClassAd shows it (hashable: a key of the evaluation cache)."""

    name: str
    cpus: int
    memory_mb: int
    disk_kb: int
    gpus: int
    arch: str = ""
    labels: tuple[str, ...] = ()

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "Machine": self.name,
            "Name": self.name,
            "Cpus": self.cpus,
            "Memory": self.memory_mb,
            "Disk": self.disk_kb,
            "GPUs": self.gpus,
            "OpSys": OPSYS,
            "Arch": self.arch,
            "Labels": list(self.labels),
        }
        attrs.update({f"Has_{label}": True for label in self.labels})
        return attrs


def arch_name(machine: str) -> str:
    """HTCondor's Arch for `platform.machine()`: X86_64 for x86_64 (as condor_status shows it), else as given."""
    return "X86_64" if machine.lower() in ("x86_64", "amd64") else machine


def job_attributes(ask: AdAsk) -> dict[str, Any]:
    return {
        "RequestCpus": ask.cpus,
        "RequestMemory": ask.memory_mb,
        "RequestDisk": ask.disk_mb * 1024,
        "RequestGpus": ask.gpus,
    }


def check_expression(text: str, key: str) -> None:
    """Raise ExpressionError when `text` is no ClassAd expression (the message names `key`)."""
    _tree(text, key)


def holds(requirements: str, node: NodeAttrs, ask: AdAsk) -> bool:
    """Whether `requirements` is true on `node` for a job asking `ask` (an empty expression always holds)."""
    return not requirements.strip() or _holds(requirements, node, _sizes(ask))


def rank_of(rank: str, node: NodeAttrs, ask: AdAsk) -> float:
    """The job's `rank` of `node` (0.0 when empty or not a number)."""
    return _rank(rank, node, _sizes(ask)) if rank.strip() else 0.0


def verdicts(asks: Iterable[AdAsk], nodes: Sequence[NodeAttrs]) -> dict[AdAsk, AdVerdict]:
    """For each distinct ask, the nodes its requirements hold on and its rank of each: plain data for the planner."""
    found: dict[AdAsk, AdVerdict] = {}
    for ask in asks:
        if ask in found:
            continue
        eligible = frozenset(n.name for n in nodes if holds(ask.requirements, n, ask))
        ranks = {n.name: rank_of(ask.rank, n, ask) for n in nodes if n.name in eligible} if ask.rank else {}
        found[ask] = AdVerdict(eligible, ranks)
    return found


@dataclass(frozen=True)
class Miss:
    """Why `requirements` holds on no node: the closest node (most clauses true, then the largest) and the first
    clause it fails."""

    node: str
    clause: str
    detail: str  # "its Memory is 16000", "no node has HasFoo"

    def message(self) -> str:
        return f"no node meets it; the closest, {self.node}, fails {self.clause} ({self.detail})"


def closest_miss(requirements: str, nodes: Sequence[NodeAttrs], ask: AdAsk) -> Miss | None:
    """None when `requirements` holds on one of `nodes` (or there are none), else the closest node's miss."""
    if not nodes or any(holds(requirements, n, ask) for n in nodes):
        return None
    clauses = split_clauses(requirements)
    sizes = _sizes(ask)

    def passed(node: NodeAttrs) -> int:
        return sum(1 for clause in clauses if _holds(clause, node, sizes))

    # Ties go to the largest node (a clause on sizes fails by the least there), then to the first name.
    best = max(nodes, key=lambda n: (passed(n), n.cpus, n.memory_mb, n.gpus, n.disk_kb, [-ord(c) for c in n.name]))
    failing = next((c for c in clauses if not _holds(c, best, sizes)), requirements)
    return Miss(best.name, failing, _detail(failing, best, nodes, sizes))


def split_clauses(text: str) -> list[str]:
    """The top-level `&&` clauses of an expression (outside parentheses and strings), outer brackets dropped."""
    clauses, depth, start, i, quoted = [], 0, 0, 0, False
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith("&&", i):
            clauses.append(text[start:i])
            start = i + 2
            i += 1
        i += 1
    clauses.append(text[start:])
    return [_unbracket(c) for c in clauses if c.strip()]


def _unbracket(clause: str) -> str:
    clause = clause.strip()
    while clause.startswith("(") and clause.endswith(")") and _closes_at_end(clause):
        clause = clause[1:-1].strip()
    return clause


def _closes_at_end(clause: str) -> bool:
    """Whether the '(' that opens `clause` is closed by its last character."""
    depth, quoted = 0, False
    for i, ch in enumerate(clause):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                return i == len(clause) - 1
    return False


# --- evaluation (classad2), cached -------------------------------------------------------------------

_Sizes = tuple[int, int, int, int]


def _sizes(ask: AdAsk) -> _Sizes:
    return (ask.cpus, ask.memory_mb, ask.disk_mb, ask.gpus)


@lru_cache(maxsize=4096)
def _tree(text: str, key: str = "requirements") -> classad2.ExprTree:
    import classad2

    if len(text) > 10000:
        raise ExpressionError(f"{key} is {len(text)} characters long; keep it under 10000")
    try:
        return classad2.ExprTree(text)
    except (classad2.ClassAdException, ValueError, RuntimeError):
        raise ExpressionError(
            f"{key} = {text[:80]}: not a ClassAd expression; write it as HTCondor does, such as "
            '(Memory >= 4096) && (OpSys == "LINUX") && member("ib", Labels)'
        ) from None


@lru_cache(maxsize=CACHE_SIZE)
def _ads(node: NodeAttrs, sizes: _Sizes) -> tuple[classad2.ClassAd, classad2.ClassAd]:
    """The node's and the job's attributes in one ad, twice: as MY and as TARGET (so every scope resolves)."""
    import classad2

    attrs = node.attributes()
    attrs.update(job_attributes(AdAsk("", "", *sizes)))
    return classad2.ClassAd(attrs), classad2.ClassAd(attrs)


def _value(text: str, node: NodeAttrs, sizes: _Sizes) -> Any:
    my, target = _ads(node, sizes)
    try:
        tree = _tree(text)
    except ExpressionError:
        return None  # checked at submit; a stored one that no longer reads matches nowhere
    return tree.eval(my, target)


@lru_cache(maxsize=CACHE_SIZE)
def _holds(text: str, node: NodeAttrs, sizes: _Sizes) -> bool:
    value = _value(text, node, sizes)
    # As classad2's ClassAd.matches: true, or a non-zero number (UNDEFINED and ERROR are an IntEnum: not numbers).
    return value is True or (type(value) in (int, float) and value != 0)


@lru_cache(maxsize=CACHE_SIZE)
def _rank(text: str, node: NodeAttrs, sizes: _Sizes) -> float:
    value = _value(text, node, sizes)
    if type(value) is bool:
        return 1.0 if value else 0.0
    return float(value) if type(value) in (int, float) else 0.0


def _detail(clause: str, node: NodeAttrs, nodes: Sequence[NodeAttrs], sizes: _Sizes) -> str:
    """What `node` has of the names `clause` reads ("its Memory is 16000"), or which no node has."""
    my, _ = _ads(node, sizes)
    tree = _tree(clause)
    # internalRefs/externalRefs answer the names as written (`TARGET.Memory`, `memory`): compare without scope.
    present: Mapping[str, str] = {k.lower(): k for k in my.keys()}  # noqa: SIM118 (a ClassAd, not a dict)
    elsewhere = {name.lower() for n in nodes for name in n.attributes()}
    shown, missing = [], []
    refs = {r.split(".")[-1] for r in (*my.internalRefs(tree), *my.externalRefs(tree)) if r}
    for ref in sorted(refs, key=str.lower):
        name = present.get(ref.lower())
        if name in JOB_ATTRIBUTES:
            shown.append(f"the job's {name} is {_literal(my.eval(name))}")
        elif name is not None:
            shown.append(f"its {name} is {_literal(my.eval(name))}")
        elif ref.lower() in elsewhere:
            shown.append(f"it has no {ref}")
        else:
            missing.append(ref)
    if missing:
        has = ", ".join(NODE_ATTRIBUTES)
        labels = sorted({label for n in nodes for label in n.labels})
        note = f"; labels on nodes: {', '.join(labels)}" if labels else ""
        return f"no node has {' or '.join(missing)}; nodes have {has}{note}"
    return ", ".join(shown) or "it is false there"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "{" + ", ".join(_literal(v) for v in value) + "}"
    return str(value)
