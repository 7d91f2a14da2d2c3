"""Benchmark results, the machine they were measured on, and how they are printed."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import psutil


@dataclass(frozen=True)
class Result:
    """One measured number beside its baseline, measured in the same run.

    `ratio` is value / baseline_value.  `size` is the scenario's size (jobs,
    runs or rows); `target` is the issue's goal, for the reader.
    """

    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    size: int
    target: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return round(self.value / self.baseline_value, 3) if self.baseline_value else None

    def as_dict(self) -> dict:
        # Four significant digits, not three decimals: a 0.0176 s baseline kept as 0.018 would make the
        # ratio (from the exact values) disagree with the numbers beside it by 2 %.
        return {**asdict(self), "value": significant(self.value), "baseline_value": significant(self.baseline_value),
                "ratio": self.ratio}  # fmt: skip


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: float) -> float:
    """The `pct` percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats
    return ordered[int(rank) - 1]


def machine(redis_version: str, quick: bool) -> dict:
    """What the numbers were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": psutil.cpu_count(logical=False) or os.cpu_count(),
        "threads": os.cpu_count(),
        "cpu": model,
        "memory_mb": psutil.virtual_memory().total // 2**20,
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "redis": redis_version,
        "database": database_name(),
        "os": platform.platform(),
        "quick": quick,
    }


def database_name() -> str:
    """The engine and version of the database the bench runs on."""
    from django.db import connection

    if connection.vendor == "postgresql":
        version = connection.pg_version  # e.g. 150020
        return f"PostgreSQL {version // 10000}.{version % 10000}"
    return f"SQLite {sqlite3.sqlite_version}"


def document(machine_info: dict, results: list[Result]) -> dict:
    return {"machine": machine_info, "results": [r.as_dict() for r in results]}


def table(machine_info: dict, results: list[Result]) -> str:
    """The results as an aligned text table, under a line saying what machine ran them."""
    from dctoolkit.cli import render_table

    m = machine_info
    head = (
        f"{m['date']}  {m['cpu'] or 'unknown cpu'}, {m['cores']} cores / {m['threads']} threads, "
        f"{m['memory_mb']} MB, Python {m['python']}, Redis {m['redis']}, {m['database']}"
        f"{', ' + m['postgres'] if m.get('postgres') else ''}, "
        f"load {m['load_at_start'][0]:.1f} at start" + ("  (--quick: a tenth of the size)" if m["quick"] else "")
    )
    rows = [["name", "value", "unit", "baseline", "baseline value", "ratio", "target"]]
    for r in results:
        rows.append(
            [r.name, _num(r.value), r.unit, r.baseline, _num(r.baseline_value),
             "-" if r.ratio is None else f"{r.ratio:.2f}", r.target]
        )  # fmt: skip
    return head + "\n\n" + render_table(rows)


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
