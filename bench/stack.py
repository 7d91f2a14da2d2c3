"""The bench's own processes: the scheduler, node workers and the baseline Celery worker.

Runs inside the bench's child process (see `bench/run.py`), whose
environment already points at the private Redis, the temporary database and
a private `DCT_VAR`; every process started here inherits that environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from bench import baseline
from dctoolkit.dev.stack import spawn, stop_processes, wait_until

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# A node worker imports Django and Celery and probes the machine before it
# registers: slow on a loaded two-core machine.
START_TIMEOUT_SECONDS = 120


class Stack:
    """Processes started for one benchmark run; `stop()` ends every one of them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = spawn(argv, cwd=ROOT, env={**os.environ, **(env or {})}, log_path=self.logs / f"{name}.log")
        self.procs[name] = proc
        return proc

    def start_scheduler(self) -> None:
        self.start("scheduler", [PYTHON, "manage.py", "scheduler"])

    def start_node(self, name: str, slots: int, sandbox: bool = True) -> None:
        """A node worker; with `sandbox=False` its bubblewrap is a path that does not exist, so it runs
        jobs unfenced (with everything else on its PATH as usual)."""
        env = {} if sandbox else {"DCT_BWRAP": str(self.workdir / "no-bwrap"), "DCT_REQUIRE_SANDBOX": "0"}
        self.start(name, [PYTHON, "worker_entry.py", "--node", name, "--slots", str(slots)], env)

    def start_baseline(self, concurrency: int) -> None:
        argv = [PYTHON, "-m", "celery", "-A", "bench.baseline", "worker", "-Q", baseline.QUEUE,
                "-n", "baseline@%h", "--pool", "threads", "-c", str(concurrency),
                "--without-gossip", "--without-mingle", "--loglevel", "INFO"]  # fmt: skip
        self.start("baseline", argv)

    def wait_nodes(self, names: list[str], timeout: float = START_TIMEOUT_SECONDS) -> None:
        from dctoolkit.nodes.models import Node, NodeState

        def online() -> bool:
            self.check_alive()
            return Node.objects.filter(name__in=names, state=NodeState.ONLINE).count() == len(names)

        wait_until(online, timeout, f"nodes {', '.join(names)} to register", interval=0.2)

    def check_alive(self) -> None:
        """Raise RuntimeError naming a process of ours that has exited, with the tail of its log."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bench: {name} exited with status {proc.returncode}:\n{tail}")

    def rss_mb(self, name: str) -> float:
        """Resident memory of the process and its children, in MB."""
        root = psutil.Process(self.procs[name].pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20

    def pss_mb(self, name: str) -> float:
        """The process and its children's proportional share of memory, in MB: a page shared by n of them
        (a forked stub's and its zygote's) counts 1/n in each, where the sum of RSS counts it n times."""
        root = psutil.Process(self.procs[name].pid)
        return sum(p.memory_full_info().pss for p in [root, *root.children(recursive=True)]) / 2**20

    def stop(self, *names: str) -> None:
        """Stop the named processes (all of them when none are named)."""
        chosen = names or tuple(self.procs)
        stop_processes([self.procs.pop(n) for n in chosen if n in self.procs])
