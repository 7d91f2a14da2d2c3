"""A warm sandbox's next job's process waits in a spare cgroup ahead of the job (zygote.py's stub).

Real bubblewrap, real cgroups (v1 here, v2 where /sys/fs/cgroup is unified),
driven as tasks.execute drives them: after a job, the pool's give_back asks
the zygote for a stub in a spare cgroup; the next job takes it
(`take_stub`, then `cgroups.for_job(spare=...)`), and its process is in its
cgroup before its first instruction, while the zygote and the sandbox's init
never are.  (test_cgroup_limits.py runs the same under real node workers.)
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from dctoolkit.dev.stack import wait_until
from dctoolkit.nodes.worker import cgroups, runner, sandbox, warm, workfiles

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]
ROOT = Path(__file__).resolve().parents[2]
ALICE = 1


@pytest.fixture
def node_cgroups():
    try:
        made = cgroups._setup(f"stubtest-{uuid.uuid4().hex[:8]}")
    except (cgroups.CgroupError, OSError) as exc:
        pytest.skip(f"no usable cgroups here: {exc}")
    yield made
    for folder in made.dirs.values():
        for left in folder.glob("*-*"):
            cgroups.JobCgroup(made.version, {"x": left}, 0).remove()
        folder.rmdir()


@pytest.fixture
def pool(tmp_path, node_cgroups):  # closed before node_cgroups goes: its sandboxes' spares first
    if not sandbox.probe()[0]:
        pytest.fail(f"bubblewrap cannot run here: {sandbox.probe()[1]} (.ci/run installs it)")
    made = warm.WarmPool(tmp_path / "scratch", keep=4)
    yield made
    made.close()


def fence() -> sandbox.Fence:
    return sandbox.Fence(workdir="", hidden=(str(ROOT),))


def run_job(pool, node_cgroups, tmp_path, script: str, job_id: int, memory_mb: int = 200, cpus: tuple = ()):
    """One job as tasks.execute runs it; (result, stdout, the job's cgroup, whether it took the stub's)."""
    box = pool.take(ALICE, fence())
    spare = box.take_stub()
    cgroup = (
        node_cgroups.adopt(spare, job_id, 1, memory_mb, 50)
        if spare
        else node_cgroups.make_job(job_id, 1, memory_mb, 50)
    )
    (box.folder / "job.sh").write_text(script)
    (box.folder / "job.sh").chmod(0o755)
    spec = runner.RunSpec(
        job_id=job_id,
        workdir=box.folder,
        argv=["./job.sh"],
        env=runner.build_env({}, workdir=box.inside, extra={}),
        stdout_path=tmp_path / f"{job_id}.out",
        stderr_path=tmp_path / f"{job_id}.err",
        cgroup=cgroup,
        cpus=cpus,
    )
    result = runner.run(spec, lambda: "", box.start_job)
    cgroup.remove()
    box.clean = workfiles.empty_folder(box.folder) and box.clean
    pool.give_back(box, node_cgroups)
    return result, spec.stdout_path.read_text(), cgroup, spare is not None, box


def cgroup_paths(text: str, version: int) -> set[str]:
    """The memory and pids cgroups (v1) or the unified one (v2) in /proc/PID/cgroup text."""
    wanted = ("memory", "pids") if version == 1 else ("",)
    return {path for name, path in cgroups.parse_proc_cgroup(text).items() if name in wanted}


def in_all(pid: int, dirs: set[Path]) -> bool:
    return all(str(pid) in (d / "cgroup.procs").read_text().split() for d in dirs)


def children(pid: int) -> list[int]:
    return [int(kid) for kid in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


# The job's first action: its own /proc/self/cgroup (cat's, exec'd in its place: the same process).
FIRST_ACTION = "#!/bin/sh\nexec cat /proc/self/cgroup\n"


def test_the_stubs_job_is_in_its_own_cgroup_before_it_runs_and_the_zygote_never_is(pool, node_cgroups, tmp_path):
    first, _, _, took, box = run_job(pool, node_cgroups, tmp_path, FIRST_ACTION, 1)
    assert first.exit_code == 0 and not took, "a new sandbox's first job starts as before"
    init = next(iter(children(box.proc.pid)), None) or box.proc.pid
    for job_id in (2, 3, 4):
        # Between jobs: the stub waits in the spare cgroup, the zygote and init are outside it.
        zygote = box.host_pid(box.zygote_pid)
        wait_until(lambda z=zygote: children(z), 10, "the zygote to fork its stub")
        (stub,) = children(zygote)
        spare_dirs = set(box._spare.dirs.values())
        wait_until(lambda s=stub, ds=spare_dirs: in_all(s, ds), 10, "the stub to enter the spare cgroup")
        for outside in (zygote, init, box.proc.pid):
            assert "/next-" not in Path(f"/proc/{outside}/cgroup").read_text(), "outside the spare"
        result, out, cgroup, took, again = run_job(pool, node_cgroups, tmp_path, FIRST_ACTION, job_id)
        assert again is box and took, "the next job took the stub's cgroup"
        assert result.exit_code == 0, result
        inside = cgroup_paths(out, node_cgroups.version)
        assert inside and all(path.endswith(f"/job-{job_id}-1") or "/next-" in path for path in inside), out
        if node_cgroups.version == 1:
            assert all(path.endswith(f"/job-{job_id}-1") for path in inside), "v1 renames the spare"
        assert not any(d.exists() for d in cgroup.dirs.values()), "removed after the job"
        for outside in (zygote, init):
            assert "/job-" not in Path(f"/proc/{outside}/cgroup").read_text()


def test_a_job_that_cannot_start_in_the_stub_says_why_and_the_sandbox_goes_on(pool, node_cgroups, tmp_path):
    run_job(pool, node_cgroups, tmp_path, "#!/bin/sh\ntrue\n", 1)
    box = pool.take(ALICE, fence())
    spare = box.take_stub()
    assert spare is not None
    cgroup = node_cgroups.adopt(spare, 2, 1, 100, 50)
    spec = runner.RunSpec(2, box.folder, ["./missing"], {"PATH": "/bin"}, tmp_path / "o", tmp_path / "e", cgroup=cgroup)
    result = runner.run(spec, lambda: "", box.start_job)
    cgroup.remove()
    pool.give_back(box, node_cgroups)
    assert result.error == "could not start ./missing: No such file or directory", result
    assert box.alive and box.clean
    after, out, _, took, _ = run_job(pool, node_cgroups, tmp_path, "#!/bin/sh\necho fine\n", 3)
    assert (after.exit_code, out, took) == (0, "fine\n", True)


def test_memory_is_measured_and_limited_on_the_job_in_the_stubs_cgroup(pool, node_cgroups, tmp_path):
    run_job(pool, node_cgroups, tmp_path, "#!/bin/sh\ntrue\n", 1)
    hog = f"#!/bin/sh\nexec {sandbox.python_executable()} -c 'x = bytearray(300 << 20); import time; time.sleep(30)'\n"
    result, _, _, took, _ = run_job(pool, node_cgroups, tmp_path, hog, 2, memory_mb=100)
    assert took and result.stopped == runner.StopReason.MEMORY, result
    touch = 'x = bytearray(150 << 20); x[::4096] = b"1" * len(x[::4096])'
    held = f"#!/bin/sh\nexec {sandbox.python_executable()} -c '{touch}'\n"
    result, _, _, took, _ = run_job(pool, node_cgroups, tmp_path, held, 3, memory_mb=400)
    assert took and result.exit_code == 0 and 150 <= result.max_rss_mb < 250, result
    result, _, _, took, _ = run_job(pool, node_cgroups, tmp_path, "#!/bin/sh\ntrue\n", 4)
    assert took and result.max_rss_mb < 50, "a trivial job's peak is not the zygote's memory"


def test_a_retired_sandboxs_stub_and_spare_cgroup_are_gone(pool, node_cgroups, tmp_path):
    *_, box = run_job(pool, node_cgroups, tmp_path, "#!/bin/sh\ntrue\n", 1)
    spare = box._spare
    assert spare is not None
    wait_until(spare.pids, 10, "the stub to wait in the spare cgroup")
    stubs = spare.pids()
    pool.close()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in stubs), 10, "the stub to be gone")
    assert not any(d.exists() for d in spare.dirs.values()), "the spare cgroup is removed with its sandbox"


def test_a_refused_job_leaves_no_stub_and_its_cgroup_is_removed_at_once(pool, node_cgroups, tmp_path):
    run_job(pool, node_cgroups, tmp_path, "#!/bin/sh\ntrue\n", 1)
    box = pool.take(ALICE, fence())
    cgroup = node_cgroups.adopt(box.take_stub(), 2, 1, 100, 50)
    spec = runner.RunSpec(2, box.folder, ["./x"], {}, tmp_path / "o", tmp_path / "e", cgroup=cgroup, refusal="no")
    assert runner.run(spec, lambda: "", box.start_job).error == "no"
    cgroup.remove()  # kills the stub; the zygote reaps it, so the cgroup goes at once
    assert not any(d.exists() for d in cgroup.dirs.values())
    pool.give_back(box, node_cgroups)
    after, out, _, took, again = run_job(pool, node_cgroups, tmp_path, "#!/bin/sh\necho fine\n", 3)
    assert (after.exit_code, out, took, again) == (0, "fine\n", True, box)


def allowed_cpus(text: str) -> str:
    """Cpus_allowed_list of /proc/PID/status text."""
    return next(line.split()[1] for line in text.splitlines() if line.startswith("Cpus_allowed_list:"))


def test_the_stub_waits_on_the_last_jobs_cores_and_each_job_runs_on_its_own(pool, node_cgroups, tmp_path):
    every = sorted(os.sched_getaffinity(0))
    if len(every) < 2:
        pytest.skip("one core: nothing to pin apart")
    core = every[-1]
    look = "#!/bin/sh\nexec cat /proc/self/status\n"
    first, out, _, _, box = run_job(pool, node_cgroups, tmp_path, look, 1, cpus=(core,))
    assert first.exit_code == 0 and allowed_cpus(out) == str(core), out
    zygote = box.host_pid(box.zygote_pid)
    wait_until(lambda: children(zygote), 10, "the zygote to fork its stub")
    (stub,) = children(zygote)
    wait_until(lambda: allowed_cpus(Path(f"/proc/{stub}/status").read_text()) == str(core), 10, "the stub's pinning")
    # Unpinned, the job gets every core back; pinned elsewhere, it runs there; each from the stub.
    for job_id, cpus, wanted in ((2, (), cpus_list(every)), (3, (every[0],), str(every[0])), (4, (core,), str(core))):
        result, out, _, took, _ = run_job(pool, node_cgroups, tmp_path, look, job_id, cpus=cpus)
        assert took and result.exit_code == 0, result
        assert allowed_cpus(out) == wanted, (cpus, out)


def cpus_list(cores: list[int]) -> str:
    """The kernel's list form of a set of cores (0-3, 0,2)."""
    runs: list[list[int]] = []
    for core in sorted(cores):
        if runs and core == runs[-1][-1] + 1:
            runs[-1].append(core)
        else:
            runs.append([core])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
