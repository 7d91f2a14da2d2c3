"""DCT_GPU_UTILIZATION_SOURCE attacked by a job, for real in bubblewrap: where the node keeps the file, a job
cannot see it; in a read-write DCT_SANDBOX_PATHS folder it can put a FIFO, a link or a huge file in its place,
and the node's read of it (each heartbeat) still returns at once, with no figures and one clear log line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dctoolkit.nodes.worker import gpuwatch, runner, sandbox
from tests.support.cluster import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

ATTACK = r"""#!/bin/sh
for f in "$@"; do
  if [ "$f" = "${f%/u.json}" ]; then continue; fi
  if rm -f "$f" 2>/dev/null && mkfifo "$f" 2>/dev/null; then echo "fifo $f"; else echo "kept out of $f"; fi
done
"""


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(gpuwatch, "_warned", set())


def run_job(folder: Path, script: str, args: list[str], fence: sandbox.Fence, out: Path) -> runner.RunResult:
    assert sandbox.probe()[0], "these tests need bubblewrap (Debian: apt-get install bubblewrap)"
    (folder / "job.sh").write_text(script)
    (folder / "job.sh").chmod(0o755)
    spec = runner.RunSpec(
        1, folder, ["./job.sh", *args], runner.build_env({}, workdir=str(folder), extra={}), out / "o", out / "e",
        fence=fence,
    )  # fmt: skip
    return runner.run(spec, lambda: "")


def read_in_thread(path: Path) -> dict:
    answer: dict = {}
    reader = threading.Thread(target=lambda: answer.update(got=gpuwatch.read_source(str(path))), daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "the node's read blocked: its heartbeat would stall"
    return answer["got"]


def test_a_job_cannot_reach_a_source_kept_outside_what_it_may_write_and_can_inside_a_rw_path(tmp_path, caplog):
    job = tmp_path / "job"
    job.mkdir()
    private, shared = tmp_path / "run", tmp_path / "shared"
    for folder in (private, shared):
        folder.mkdir()
        (folder / "u.json").write_text('{"0": 40}')
    fence = sandbox.Fence(
        workdir=str(job), hidden=(str(ROOT),), extra_paths=(sandbox.ExtraPath(str(shared), writable=True),)
    )
    result = run_job(job, ATTACK, [str(private / "u.json"), str(shared / "u.json")], fence, tmp_path)
    said = (tmp_path / "o").read_text()
    assert result.exit_code == 0, (result, (tmp_path / "e").read_text())
    assert f"kept out of {private / 'u.json'}" in said and f"fifo {shared / 'u.json'}" in said, said
    assert gpuwatch.read_source(str(private / "u.json")) == {0: 40.0}, "the node's own file is untouched"
    # The FIFO the job left where the node reads: the read does not wait for a writer.
    assert read_in_thread(shared / "u.json") == {}
    assert f"DCT_GPU_UTILIZATION_SOURCE={shared / 'u.json'}: not a regular file" in caplog.text
    assert gpuwatch.writable_by_jobs(str(shared / "u.json"), [(str(shared), True)], sandboxed=True), "named at start"


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ('#!/bin/sh\nln -sf /dev/zero "$1"\n', "is a link"),  # endless: read whole, it would eat the node's memory
        ('#!/bin/sh\nhead -c 10000000 /dev/zero | tr "\\0" " " > "$1"\n', "larger than 64 KiB"),
    ],
)
def test_what_a_job_puts_in_a_writable_source_gives_no_figures_and_never_a_whole_read(
    tmp_path, caplog, script, problem
):
    job, shared = tmp_path / "job", tmp_path / "shared"
    job.mkdir()
    shared.mkdir()
    fence = sandbox.Fence(
        workdir=str(job), hidden=(str(ROOT),), extra_paths=(sandbox.ExtraPath(str(shared), writable=True),)
    )
    result = run_job(job, script, [str(shared / "u.json")], fence, tmp_path)
    assert result.exit_code == 0, (result, (tmp_path / "e").read_text())
    assert read_in_thread(shared / "u.json") == {}
    assert f"DCT_GPU_UTILIZATION_SOURCE={shared / 'u.json'}: {problem}" in caplog.text
