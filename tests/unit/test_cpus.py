"""Which cores a job is pinned to (cpus.choose), and that a process started while pinned runs on them."""

import os
import subprocess
import sys

import pytest

from dctoolkit.nodes.worker import cpus, zygote


def test_jobs_get_cores_of_their_own_while_enough_are_free():
    pool = cpus.CorePool(range(8))
    first, second = pool.take(2), pool.take(3)
    assert first == (0, 1) and second == (2, 3, 4)
    pool.give_back(first)
    assert pool.take(4) == (0, 1, 5, 6), "freed cores are taken again, none of a running job's"


def test_more_slots_than_cores_share_the_least_used():
    assert cpus.choose([0, 1, 2], {0: 2, 1: 1, 2: 1}, 1) == (1,)
    assert cpus.choose([0, 1, 2], {0: 2, 1: 1, 2: 1}, 2) == (1, 2)
    pool = cpus.CorePool([4, 6])
    assert [pool.take(1) for _ in range(4)] == [(4,), (6,), (4,), (6,)]


def test_a_request_is_at_least_one_core_and_at_most_all():
    assert cpus.choose([3, 5], {}, 0) == (3,)
    assert cpus.choose([3, 5], {}, 9) == (3, 5)
    assert cpus.choose([], {}, 2) == (), "no cores known: not pinned"


def test_given_back_cores_count_as_free_again():
    pool = cpus.CorePool([0, 1])
    taken = pool.take(1)
    pool.give_back(taken)
    assert pool.take(2) == (0, 1)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_a_process_started_while_pinned_runs_on_its_cores_and_the_thread_gets_its_own_back():
    before = os.sched_getaffinity(0)
    core = max(before)
    with cpus.pinned_spawn((core,)):
        out = subprocess.run(["grep", "Cpus_allowed_list", "/proc/self/status"], capture_output=True, text=True)
    assert out.stdout.split()[-1] == str(core)
    assert os.sched_getaffinity(0) == before


def test_the_zygote_request_carries_the_cores_and_refuses_odd_ones():
    request = zygote.decode_request(zygote.encode_request(["./job"], {}, "/w", cpus=(1, 3)))
    assert request["cpus"] == [1, 3]
    assert zygote.decode_request(zygote.encode_request(["./job"], {}, "/w"))["cpus"] == []
    for bad in (b'{"cwd": "/w", "argc": 1, "cpus": ["1"]}\0./job', b'{"cwd": "/w", "argc": 1, "cpus": 3}\0./job'):
        with pytest.raises(ValueError):
            zygote.decode_request(bad)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_the_zygotes_child_pins_itself_before_exec():
    core = max(os.sched_getaffinity(0))
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=lambda: zygote.enter([], (core,)), capture_output=True, text=True
    )
    assert proc.stdout.strip() == f"[{core}]"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_an_unfenced_job_started_by_the_runner_runs_on_its_cores(tmp_path):
    from dctoolkit.nodes.worker import runner

    core = max(os.sched_getaffinity(0))
    spec = runner.RunSpec(job_id=1, workdir=tmp_path, argv=["grep", "Cpus_allowed_list", "/proc/self/status"],
                          env={"PATH": "/usr/bin:/bin"}, stdout_path=tmp_path / "out", stderr_path=tmp_path / "err",
                          cpus=(core,))  # fmt: skip
    result = runner.run(spec, lambda: "")
    assert result.exit_code == 0, (tmp_path / "err").read_text()
    assert (tmp_path / "out").read_text().split()[-1] == str(core)
    assert len(os.sched_getaffinity(0)) > 1, "the worker's thread has all its cores back"


def test_a_request_for_the_zygotes_stub_says_so_and_a_prepare_is_no_request():
    assert zygote.decode_request(zygote.encode_request(["./job"], {}, "/w", stub=True))["stub"] is True
    assert "stub" not in zygote.decode_request(zygote.encode_request(["./job"], {}, "/w"))
    with pytest.raises(KeyError):
        zygote.decode_request(zygote.PREPARE)  # its own message: the zygote never reads it as a job's
