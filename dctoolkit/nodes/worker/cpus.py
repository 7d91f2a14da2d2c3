"""Which CPU cores each job attempt of this node worker is pinned to (`cpu_indices` in the job object).

`choose` decides (pure); `CorePool` holds what running jobs use.  A job is
given `request_cpus` of the cores the worker may use (its affinity when it
started), none shared with another running job while enough are free.  A
node may offer more slots than it has cores (DCT_NODE_SLOTS): then jobs
share cores, each new one on the least used.  The runner and the zygote
set the job's affinity before it execs (`pinned_spawn`, zygote.run_one).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager


def choose(usable: Sequence[int], in_use: Mapping[int, int], want: int) -> tuple[int, ...]:
    """`want` cores of `usable` (at least one, at most all), the least used first, then the lowest number.

    `in_use`: core -> how many running jobs are pinned to it.  Free cores
    come first, so no two jobs share a core while enough are free; past
    that (more slots than cores), the least shared ones.
    """
    if not usable:
        return ()
    count = min(max(want, 1), len(usable))
    ranked = sorted(set(usable), key=lambda core: (in_use.get(core, 0), core))
    return tuple(sorted(ranked[:count]))


class CorePool:
    """The cores this worker's running jobs are pinned to (one per node worker, shared by its slots)."""

    def __init__(self, usable: Sequence[int]) -> None:
        self.usable = tuple(sorted(usable))
        self._in_use: Counter[int] = Counter()
        self._lock = threading.Lock()

    def take(self, want: int) -> tuple[int, ...]:
        with self._lock:
            cores = choose(self.usable, self._in_use, want)
            self._in_use.update(cores)
            return cores

    def give_back(self, cores: Sequence[int]) -> None:
        with self._lock:
            self._in_use.subtract(cores)
            self._in_use += Counter()  # drops the zeros


_pool: CorePool | None = None
_pool_lock = threading.Lock()


def pool() -> CorePool:
    """This worker's pool, over the cores it was allowed when first asked (before any job was pinned)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = CorePool(sorted(os.sched_getaffinity(0)))
        return _pool


@contextmanager
def pinned_spawn(cores: Sequence[int]) -> Iterator[None]:
    """While inside, the calling thread runs on `cores` only, so a process it starts does too.

    Linux keeps an affinity per thread, and a child starts with its parent
    thread's: set around a Popen (vfork or fork, no preexec_fn needed), the
    job and everything it starts (bubblewrap, the join shell) are pinned
    before their first instruction.  The thread's own cores come back after.
    Empty `cores`: nothing changes.
    """
    if not cores:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
