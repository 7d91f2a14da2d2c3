"""Warm sandboxes: kept between jobs, yet nothing of one job reaches the next, and never another user's.

Real bubblewrap and real processes, driven through `runner.run` exactly as a
node drives them, without the rest of a cluster (tests/integration/test_sandbox.py
runs the same sandboxes under real node workers).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from dctoolkit.dev.stack import wait_until
from dctoolkit.nodes.worker import runner, sandbox, warm, workfiles

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]
ROOT = Path(__file__).resolve().parents[2]
ALICE, BOB = 1, 2


@pytest.fixture
def pool(tmp_path):
    if not sandbox.probe()[0]:
        pytest.fail(f"bubblewrap cannot run here: {sandbox.probe()[1]} (.ci/run installs it)")
    made = warm.WarmPool(tmp_path / "scratch", keep=4)
    yield made
    made.close()


def fence(**changes) -> sandbox.Fence:
    return sandbox.Fence(workdir="", hidden=(str(ROOT),), **changes)


def run_in(pool: warm.WarmPool, tmp_path: Path, script: str, owner: int = ALICE, stop=lambda: "", **spec_changes):
    """Run `script` as a node would in a warm sandbox of `owner`; (result, stdout, stderr, the sandbox)."""
    box = pool.take(owner, spec_changes.pop("fence", None) or fence())
    (box.folder / "job.sh").write_text(script)
    (box.folder / "job.sh").chmod(0o755)
    name = uuid.uuid4().hex
    spec = runner.RunSpec(
        job_id=1,
        workdir=box.folder,
        argv=["./job.sh"],
        env=runner.build_env({}, workdir=box.inside, extra={}),
        stdout_path=tmp_path / f"{name}.out",
        stderr_path=tmp_path / f"{name}.err",
        **spec_changes,
    )
    result = runner.run(spec, stop, box.start_job)
    box.clean = workfiles.empty_folder(box.folder) and box.clean
    pool.give_back(box)
    return result, spec.stdout_path.read_text(), spec.stderr_path.read_text(), box


def marked(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


def test_the_next_job_of_the_same_owner_and_fence_reuses_the_sandbox(pool, tmp_path):
    first, out1, _, box1 = run_in(pool, tmp_path, "#!/bin/sh\necho one; exit 3\n")
    second, _, err2, box2 = run_in(pool, tmp_path, "#!/bin/sh\necho two >&2\n")
    assert (first.exit_code, out1) == (3, "one\n"), first
    assert (second.exit_code, err2) == (0, "two\n")
    assert box2 is box1 and box1.alive and box1.jobs == 2


def test_nothing_a_job_leaves_reaches_the_next_one(pool, tmp_path):
    marker = f"{uuid.uuid4().int % 10**6}.5"
    leave = (
        "#!/bin/sh\n"
        "echo left > /tmp/note; mkdir /tmp/dir; echo left > /tmp/dir/x; echo left > /dev/shm/seg\n"
        "echo left > left-in-folder\n"
        f"(setsid sh -c 'sleep 3{marker}' &)\n"  # a double-forked daemon, reparented away from the job
        "echo done\n"
    )
    look = "#!/bin/sh\nls -A /tmp /dev/shm .; ls /proc | grep -c '^[0-9]'\n"
    result, out, _, box = run_in(pool, tmp_path, leave)
    assert (result.exit_code, out) == (0, "done\n"), result
    assert box.clean, "the zygote and the node both found the sandbox as it was"
    wait_until(lambda: not marked(marker), 5, "the daemon to be killed when its job ended")
    result, out, err, again = run_in(pool, tmp_path, look)
    assert again is box and result.exit_code == 0, (result, err)
    assert "note" not in out and "dir" not in out and "seg" not in out and "left-in-folder" not in out, out
    # Left in /proc: the sandbox's init, the zygote, and this job's shell, ls and grep.
    assert int(out.split()[-1]) <= 5, out


def test_another_owner_or_another_fence_never_gets_the_sandbox(pool, tmp_path):
    *_, alices = run_in(pool, tmp_path, "#!/bin/sh\ntrue\n")
    *_, bobs = run_in(pool, tmp_path, "#!/bin/sh\ntrue\n", owner=BOB)
    *_, offline = run_in(pool, tmp_path, "#!/bin/sh\ntrue\n", fence=fence(network="none"))
    assert len({id(alices), id(bobs), id(offline)}) == 3
    assert alices.folder != bobs.folder and alices.proc.pid != bobs.proc.pid
    *_, alices_again = run_in(pool, tmp_path, "#!/bin/sh\ntrue\n")
    assert alices_again is alices


def test_what_cannot_be_cleaned_away_retires_the_sandbox(pool, tmp_path):
    # No capabilities inside, so even a node running as root cannot delete from a folder made unreadable.
    result, _, err, box = run_in(
        pool, tmp_path, "#!/bin/sh\nmkdir /tmp/locked; touch /tmp/locked/f; chmod 0 /tmp/locked\n"
    )
    assert result.exit_code == 0, err
    assert not box.clean and not box.alive, "retired"
    *_, fresh = run_in(pool, tmp_path, "#!/bin/sh\ntrue\n")
    assert fresh is not box


def test_a_job_that_kills_its_zygote_fails_with_a_reason(pool, tmp_path):
    result, _, _, box = run_in(pool, tmp_path, "#!/bin/sh\nkill -9 $PPID\nsleep 5\n")
    # Before the zygote said "started" or after: the job fails either way, never started again elsewhere.
    assert result.exit_code is None and "sandbox ended" in result.error, result
    assert "was its zygote killed?" in result.error, result
    assert not box.alive
    after, out, _, _ = run_in(pool, tmp_path, "#!/bin/sh\necho fine\n")
    assert (after.exit_code, out) == (0, "fine\n")


def test_a_program_that_cannot_start_says_why(pool, tmp_path):
    box = pool.take(ALICE, fence())
    spec = runner.RunSpec(1, box.folder, ["./missing"], {"PATH": "/bin"}, tmp_path / "o", tmp_path / "e")
    result = runner.run(spec, lambda: "", box.start_job)
    pool.give_back(box)
    assert result.error == "could not start ./missing: No such file or directory", result
    assert box.alive and box.clean, "the sandbox itself is fine"


def test_cancel_kills_the_jobs_whole_tree_and_keeps_the_sandbox(pool, tmp_path):
    marker = f"{uuid.uuid4().int % 10**6}.25"
    script = f"#!/bin/sh\nsetsid sh -c 'sleep 3{marker}' &\nsleep 4{marker}\n"
    asked = []

    def stop() -> str:
        asked.append(1)
        return runner.StopReason.CANCEL if marked(marker) else ""

    result, _, _, box = run_in(pool, tmp_path, script, stop=stop)
    assert result.stopped == runner.StopReason.CANCEL and result.exit_code == -15, result
    assert not marked(marker)
    assert box.clean and box.alive, "a cancelled job's sandbox serves the next job"


def test_memory_and_cpu_are_measured_on_the_job_itself(pool, tmp_path):
    hog = f"#!/bin/sh\nexec {sandbox.python_executable()} -c 'x = bytearray(300 << 20); import time; time.sleep(30)'\n"
    result, _, err, _ = run_in(pool, tmp_path, hog, memory_limit_mb=100)
    assert result.stopped == runner.StopReason.MEMORY and result.max_rss_mb > 100, (result, err)
    spin = "#!/bin/sh\ni=0; while [ $i -lt 200000 ]; do i=$((i+1)); done\n"
    result, *_ = run_in(pool, tmp_path, spin)
    assert result.exit_code == 0 and 0.05 < result.cpu_seconds <= result.wall_seconds + 0.05, result


def test_the_zygote_sees_nothing_of_the_node(pool, tmp_path):
    os.environ["DCT_WARM_TEST_CANARY"] = canary = uuid.uuid4().hex
    try:
        result, out, err, _ = run_in(
            pool,
            tmp_path,
            "#!/bin/sh\ncat /proc/[0-9]*/environ 2>&1 | tr '\\0' '\\n'\nls -l /proc/[0-9]*/fd/ 2>&1\ntrue\n",
        )
    finally:
        del os.environ["DCT_WARM_TEST_CANARY"]
    assert result.exit_code == 0, err
    # The zygote (pid 2; bubblewrap's init, pid 1, is covered) is not dumpable: its environment is not there.
    assert "cat: /proc/2/environ: Permission denied" in out, out
    assert canary not in out and "SECRET_KEY" not in out and "DATABASE_URL" not in out, out
    assert ".log" not in out and str(ROOT) not in out, "no file of the node's is open in the sandbox"


def test_an_unused_sandbox_is_retired_and_its_folder_removed(pool, tmp_path, monkeypatch):
    *_, box = run_in(pool, tmp_path, "#!/bin/sh\ntrue\n")
    pool.retire_stale()
    assert box.alive, "used just now"
    monkeypatch.setattr(warm, "IDLE_SECONDS", 0.0)
    pool.retire_stale()
    assert not box.alive and not box.folder.exists()


def test_a_job_given_a_dead_sandbox_fails_with_a_reason_and_never_starts_elsewhere(pool, tmp_path):
    box = pool.take(ALICE, fence())
    inside = list(box._in_sandbox())  # the host's pids of its init and zygote
    box.kill()  # as if the zygote had died between two jobs
    box.proc.wait()
    # The zygote dies by its parent-death signal, a moment after bubblewrap: on a loaded machine it could still
    # take the job (as a live zygote should), which is not what this test is about.
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in inside), 10, "the sandbox's processes to end")
    (box.folder / "job.sh").write_text("#!/bin/sh\necho ran > ran.txt\n")
    (box.folder / "job.sh").chmod(0o755)
    spec = runner.RunSpec(
        1,
        box.folder,
        ["./job.sh"],
        runner.build_env({}, workdir=box.inside, extra={}),
        tmp_path / "o",
        tmp_path / "e",
        fence=replace(fence(), workdir=str(box.folder)),
    )
    result = runner.run(spec, lambda: "", box.start_job)
    pool.give_back(box)
    assert result.exit_code is None and "the sandbox was retired" in result.error, result
    assert result.error.endswith("; submit the job again"), result.error
    assert not (box.folder / "ran.txt").exists(), "the job ran nowhere: no fresh bubblewrap took it"
    assert not box.alive and not box.folder.exists(), "the dead sandbox was retired"


def test_a_sandbox_whose_init_or_zygote_cannot_be_found_is_not_reused(pool, tmp_path):
    *_, box = run_in(pool, tmp_path, "#!/bin/sh\ntrue\n")
    assert box._only_zygote_left()
    box._init_and_zygote = (None, box._init_and_zygote[1])  # as if the init had not been found
    assert not box._only_zygote_left()


def test_a_tree_in_tmp_deeper_than_python_recurses_retires_the_sandbox_and_the_job_keeps_its_result(pool, tmp_path):
    # The zygote empties /tmp with shutil.rmtree, which recurses once per level:
    # 1,100 levels pass the interpreter's limit.  The job's own result stands;
    # the sandbox, not provably empty, is retired.
    deep = "#!/bin/sh\ncd /tmp\nfor i in $(seq 1100); do mkdir d; cd d; done\necho deep > leaf\necho made\n"
    result, out, err, box = run_in(pool, tmp_path, deep)
    assert (result.exit_code, result.error, out) == (0, "", "made\n"), (result, err)
    assert not box.clean and not box.alive
    again, out2, _, box2 = run_in(pool, tmp_path, "#!/bin/sh\ntest -e /tmp/d && echo left || echo clean\n")
    assert (again.exit_code, out2, box2 is box) == (0, "clean\n", False)
