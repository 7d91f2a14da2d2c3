"""What a job asks of a machine beyond sizes (labels, node choice, GPU kind, ClassAd requirements), and whether
a node has it.

Pure and shared: the planner (`policy`), the reason a job waits (`reasons`) and the check at submit
(`intake.parse.check_nodes`) all ask these same functions, so they never disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

# A label (and a node name): what `labels =` and DCT_NODE_LABELS accept.
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class LabelError(ValueError):
    """A list of labels or node names with one that is not a name."""


def split_names(text: str, what: str = "label") -> list[str]:
    """`ib, avx512` -> ['ib', 'avx512'] (commas or blanks between; also `a&b`, Slurm's --constraint).

    Raises LabelError naming the first bad one."""
    names = [part for part in re.split(r"[\s,&]+", text.strip()) if part]
    for name in names:
        if not LABEL.match(name):
            raise LabelError(
                f"'{name[:40]}' is not a {what}: use letters, digits, '.', '_' and '-' (such as gpu80, fast-net)"
            )
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class GpuKind:
    """One GPU as matching sees it: its device name, memory (MB) and compute capability (0: unknown)."""

    name: str = ""
    memory_mb: int = 0
    capability: float = 0.0


@dataclass(frozen=True)
class Wants:
    """A job's machine choice: every one of `labels`, one of `nodes` (empty: any), none of `avoid`;
    and GPUs whose name contains `gpu_type` (case-insensitive), with at least `gpu_memory_mb` and
    `gpu_capability`; HTCondor's `requirements` and `rank` (ClassAd expressions, evaluated by `classads`) and
    `request_disk` (`disk_mb`, against a node's free scratch space)."""

    labels: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    avoid: frozenset[str] = frozenset()
    gpu_type: str = ""
    gpu_memory_mb: int = 0
    gpu_capability: float = 0.0
    requirements: str = ""
    rank: str = ""
    disk_mb: int = 0

    @cached_property
    def picks_nodes(self) -> bool:
        """Whether it names labels, nodes or nodes to avoid (else every node passes `node_ok`); worked out once
        per Wants (the jobs of a submission share one), as the planner asks it for every node it tries."""
        return bool(self.labels or self.nodes or self.avoid)

    @property
    def picky_gpus(self) -> bool:
        return bool(self.gpu_type or self.gpu_memory_mb or self.gpu_capability)

    def node_ok(self, name: str, labels: frozenset[str]) -> bool:
        return (not self.nodes or name in self.nodes) and name not in self.avoid and self.labels <= labels

    def gpu_ok(self, gpu: GpuKind | None) -> bool:
        if gpu is None:
            return not self.picky_gpus
        return (
            (not self.gpu_type or self.gpu_type.lower() in gpu.name.lower())
            and gpu.memory_mb >= self.gpu_memory_mb
            and gpu.capability >= self.gpu_capability
        )

    def matching_gpus(self, indices: Iterable[int], kinds: Mapping[int, GpuKind]) -> list[int]:
        """Those of `indices` whose GPU this job takes, in the order given."""
        if not self.picky_gpus:
            return list(indices)
        return [i for i in indices if self.gpu_ok(kinds.get(i))]

    def as_dict(self) -> dict[str, Any]:
        """The stored form (Job.placement): only what is asked."""
        stored: dict[str, Any] = {
            "labels": sorted(self.labels),
            "nodes": sorted(self.nodes),
            "avoid": sorted(self.avoid),
            "gpu_type": self.gpu_type,
            "gpu_memory_mb": self.gpu_memory_mb,
            "gpu_capability": self.gpu_capability,
            "requirements": self.requirements,
            "rank": self.rank,
            "disk_mb": self.disk_mb,
        }
        return {key: value for key, value in stored.items() if value}

    def describe_gpu(self, count: int) -> str:
        """`2 T4 GPUs with at least 16384 MB`: `count` GPUs of the kind asked for, in words."""
        noun = "GPU" if count == 1 else "GPUs"
        parts = [f"{count} {self.gpu_type} {noun}" if self.gpu_type else f"{count} {noun}"]
        if self.gpu_memory_mb:
            parts.append(f"with at least {self.gpu_memory_mb} MB")
        if self.gpu_capability:
            parts.append(f"of compute capability {self.gpu_capability:g} or more")
        return " ".join(parts)


ANY = Wants()


def wants_from(stored: Mapping[str, Any] | str | None) -> Wants:
    """The Wants of a stored `Job.placement` (a dict, or its JSON text as a raw query returns it)."""
    if not stored:
        return ANY
    if isinstance(stored, str):
        return _wants_from_text(stored)
    return Wants(
        labels=frozenset(stored.get("labels", ())),
        nodes=frozenset(stored.get("nodes", ())),
        avoid=frozenset(stored.get("avoid", ())),
        gpu_type=str(stored.get("gpu_type", "")),
        gpu_memory_mb=int(stored.get("gpu_memory_mb", 0)),
        gpu_capability=float(stored.get("gpu_capability", 0.0)),
        requirements=str(stored.get("requirements", "")),
        rank=str(stored.get("rank", "")),
        disk_mb=int(stored.get("disk_mb", 0)),
    )


@lru_cache(maxsize=4096)
def _wants_from_text(text: str) -> Wants:
    # The jobs of one submission store the same text: parsed once per pass, not once per job.
    return ANY if text in ("{}", "") else wants_from(json.loads(text))


@dataclass(frozen=True)
class AdAsk:
    """What a job's ClassAd expressions see of it: the expressions and its requests (`classads` evaluates them)."""

    requirements: str
    rank: str
    cpus: int
    memory_mb: int
    disk_mb: int
    gpus: int


@dataclass(frozen=True)
class AdVerdict:
    """An AdAsk against the nodes of one pass: the names of those its requirements hold on, and its rank of each."""

    eligible: frozenset[str]
    ranks: Mapping[str, float]

    def rank(self, node: str) -> float:
        return self.ranks.get(node, 0.0)


def ad_ask(wants: Wants, cpus: int, memory_mb: int, gpus: int) -> AdAsk | None:
    """The AdAsk of a job with these wants and sizes; None when it has neither requirements nor rank."""
    if not (wants.requirements or wants.rank):
        return None
    return AdAsk(wants.requirements, wants.rank, cpus, memory_mb, wants.disk_mb, gpus)


def gpu_kinds(gpus: Sequence[Mapping[str, Any]]) -> dict[int, GpuKind]:
    """index -> GpuKind from a node's stored `gpus` ([{index, name, memory_mb, capability}])."""
    return {
        int(g["index"]): GpuKind(str(g.get("name", "")), int(g.get("memory_mb") or 0), float(g.get("capability") or 0))
        for g in gpus
    }


@dataclass(frozen=True)
class Machine:
    """What matching needs to know of a node to say what it lacks."""

    name: str
    labels: frozenset[str]
    gpus: Mapping[int, GpuKind]


@dataclass(frozen=True)
class Lack:
    """What no machine has for a job: `what` is "node" (node choice), "labels" or "gpus"; `message` says it."""

    what: str
    message: str


def lacking(wants: Wants, gpus: int, machines: Sequence[Machine]) -> Lack | None:
    """Why none of `machines` could ever take a job with these wants and `gpus` GPUs; None when one could.

    Names the first thing no machine has (a node, a label, a GPU kind) and what there is instead.
    """
    if any(wants.node_ok(m.name, m.labels) and len(wants.matching_gpus(m.gpus, m.gpus)) >= gpus for m in machines):
        return None
    names = sorted(m.name for m in machines)
    if wants.nodes and not wants.nodes & set(names):
        return Lack("node", f"no node is named {_words(wants.nodes)}; nodes are: {', '.join(names)}")
    chosen = [m for m in machines if (not wants.nodes or m.name in wants.nodes) and m.name not in wants.avoid]
    if not chosen:
        return Lack("node", f"the nodes it may use ({_words(wants.nodes) if wants.nodes else 'all'}) are all avoided")
    # Restricted to some nodes: say which, and show the labels of every node (the fix may be another node).
    which = "no node" if len(chosen) == len(machines) else f"no node it may use ({', '.join(m.name for m in chosen)})"
    for label in sorted(wants.labels):
        if not any(label in m.labels for m in chosen):
            return Lack("labels", f"{which} has label '{label}'; {labels_on(machines)}")
    labelled = [m for m in chosen if wants.labels <= m.labels]
    if not labelled:
        return Lack("labels", f"{which} has all of the labels {', '.join(sorted(wants.labels))}; {labels_on(machines)}")
    if wants.picky_gpus:
        return Lack("gpus", f"{which} has {wants.describe_gpu(gpus)}; GPUs on nodes: {gpus_on(labelled)}")
    best = max(labelled, key=lambda m: (len(m.gpus), m.name))
    return Lack("gpus", f"needs {gpus} GPUs, the most on a node it may use is {len(best.gpus)} ({best.name})")


def labels_on(machines: Iterable[Machine]) -> str:
    """`labels on nodes: bigmem (node-2), gpu (node-1)`, or `no node has labels`."""
    owners: dict[str, list[str]] = {}
    for m in machines:
        for label in m.labels:
            owners.setdefault(label, []).append(m.name)
    if not owners:
        return "no node has labels (DCT_NODE_LABELS)"
    return "labels on nodes: " + ", ".join(f"{label} ({', '.join(sorted(owners[label]))})" for label in sorted(owners))


def gpus_on(machines: Iterable[Machine]) -> str:
    """`A100 40960 MB, T4 16384 MB (node-1); none (node-2)`."""
    shown = []
    for m in sorted(machines, key=lambda m: m.name):
        kinds = [_gpu_words(m.gpus[i]) for i in sorted(m.gpus)]
        shown.append(f"{', '.join(kinds) or 'none'} ({m.name})")
    return "; ".join(shown)


def _gpu_words(gpu: GpuKind) -> str:
    words = gpu.name or "GPU"
    if gpu.memory_mb:
        words += f" {gpu.memory_mb} MB"
    if gpu.capability:
        words += f" cc {gpu.capability:g}"
    return words


def _words(names: Iterable[str]) -> str:
    return " or ".join(sorted(names))
