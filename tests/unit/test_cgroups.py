"""The pure parts of per-job cgroups: reading the kernel's files and choosing where a job's cgroup goes."""

import subprocess
from pathlib import Path

import pytest

from dctoolkit.nodes.worker import cgroups
from dctoolkit.nodes.worker.cgroups import CgroupError

V1 = """\
12:pids:/user.slice/user-1000.slice/session-3.scope
11:memory:/process_api/8c790339
4:cpu,cpuacct:/
1:name=systemd:/user.slice
0::/
"""
V2 = "0::/system.slice/dctoolkit-node.service\n"
OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
OLD_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\n"  # before Linux 4.13
MEMORY_EVENTS = "low 0\nhigh 0\nmax 17\noom 1\noom_kill 1\noom_group_kill 0\n"


def test_proc_self_cgroup_is_read_for_v1_controllers_and_the_v2_entry():
    found = cgroups.parse_proc_cgroup(V1)
    assert found["pids"] == "/user.slice/user-1000.slice/session-3.scope"
    assert found["memory"] == "/process_api/8c790339"
    assert found["cpu"] == found["cpuacct"] == "/"  # co-mounted controllers share a line
    assert found["name=systemd"] == "/user.slice" and found[""] == "/"
    assert cgroups.parse_proc_cgroup(V2) == {"": "/system.slice/dctoolkit-node.service"}
    assert cgroups.parse_proc_cgroup("garbage\n\n") == {}


def test_a_jobs_cgroup_nests_under_the_nodes_own_in_each_hierarchy(tmp_path):
    own = cgroups.own_dirs(1, cgroups.parse_proc_cgroup(V1), tmp_path)
    assert own == {
        "memory": tmp_path / "memory/process_api/8c790339",
        "pids": tmp_path / "pids/user.slice/user-1000.slice/session-3.scope",
        "cpu": tmp_path / "cpu",  # co-mounted with cpuacct: /sys/fs/cgroup/cpu is its link
    }
    assert "cpu" not in cgroups.own_dirs(1, {"memory": "/", "pids": "/"}, tmp_path), "the cpu controller is optional"
    node = cgroups.node_dirs(own, "gpu-1", 4242)
    job = cgroups.job_dirs(node, 12, 3)
    assert job["memory"] == tmp_path / "memory/process_api/8c790339/dctoolkit-gpu-1-4242/job-12-3"
    assert job["pids"] == tmp_path / "pids/user.slice/user-1000.slice/session-3.scope/dctoolkit-gpu-1-4242/job-12-3"
    v2 = cgroups.job_dirs(cgroups.node_dirs(cgroups.own_dirs(2, cgroups.parse_proc_cgroup(V2), tmp_path), "n", 7), 5, 1)
    assert v2 == {"unified": tmp_path / "system.slice/dctoolkit-node.service/dctoolkit-n-7/job-5-1"}


def test_a_node_without_the_controllers_is_told_which_is_missing(tmp_path):
    with pytest.raises(CgroupError, match="has no pids controller"):
        cgroups.own_dirs(1, {"memory": "/", "": "/"}, tmp_path)
    with pytest.raises(CgroupError, match=r"no cgroup v2 entry \(0::/PATH\)"):
        cgroups.own_dirs(2, {"memory": "/"}, tmp_path)


def test_a_node_name_cannot_climb_out_of_its_cgroup():
    assert cgroups.safe_name("../../etc") == ".._.._etc"
    assert "/" not in cgroups.safe_name("a/b c") and cgroups.safe_name("") == "_"


def test_limits_are_memory_with_swap_and_then_pids():
    assert cgroups.limit_files(1, 100, 50) == [
        ("memory", "memory.limit_in_bytes", str(100 << 20), True),
        # memsw may never be set below the memory limit, so it comes second; off where swap accounting is off
        ("memory", "memory.memsw.limit_in_bytes", str(100 << 20), False),
        ("pids", "pids.max", "50", True),
    ]
    assert cgroups.limit_files(2, 1, 4096) == [
        ("unified", "memory.max", str(1 << 20), True),
        ("unified", "memory.swap.max", "0", False),
        ("unified", "memory.oom.group", "1", False),
        ("unified", "pids.max", "4096", True),
    ]
    assert cgroups.limit_files(1, 0, 7) == [("pids", "pids.max", "7", True)], "no memory request: no memory limit"


def test_a_cpu_limit_gives_request_cpus_cores_of_time_per_period():
    assert cgroups.limit_files(1, 0, 7, cpus=2) == [
        ("pids", "pids.max", "7", True),
        # the quota is checked against the period: the period first
        ("cpu", "cpu.cfs_period_us", "100000", True),
        ("cpu", "cpu.cfs_quota_us", "200000", True),
    ]
    assert cgroups.limit_files(2, 0, 7, cpus=1)[-1] == ("unified", "cpu.max", "100000 100000", True)
    assert cgroups.limit_files(2, 0, 7, cpus=None) == [("unified", "pids.max", "7", True)], "no cpu controller"


def test_enforcement_says_cgroup_or_affinity_for_cpus():
    with_cpu = cgroups.NodeCgroups(1, {}, cpu=True)
    assert cgroups.enforcement_of(with_cpu) == {"cpus": "cgroup", "memory": "cgroup", "pids": "cgroup"}
    assert cgroups.enforcement_of(cgroups.NodeCgroups(2, {}))["cpus"] == "affinity"
    assert cgroups.enforcement_of(None) == {"cpus": "affinity", "memory": "watch", "pids": None}


def test_oom_kills_are_read_from_oom_control_and_memory_events():
    assert cgroups.oom_kills(1, OOM_CONTROL) == 2
    assert cgroups.oom_kills(2, MEMORY_EVENTS) == 1
    assert cgroups.oom_kills(1, OLD_OOM_CONTROL) is None, "a kernel that keeps no count says so"
    assert cgroups.parse_keyed("max 3\nbroken\nx y\n") == {"max": 3}


def test_the_join_shell_enters_every_cgroup_then_becomes_the_job(tmp_path):
    # Plain files stand in for cgroup.procs: the shell writes "0" to each, then execs the job itself.
    job = cgroups.JobCgroup(1, {"memory": tmp_path / "m", "pids": tmp_path / "p"}, 10)
    for folder in job.dirs.values():
        folder.mkdir()
    argv = cgroups.joining(["sh", "-c", 'echo "$0 $1"; echo $$', "--", "it's me"], job)
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[0] == "-- it's me", "the job's own arguments, even a '--', arrive as they were"
    assert [Path(p).read_text() for p in job.procs_paths()] == ["0\n", "0\n"]


def test_the_join_shell_refuses_to_run_the_job_outside_its_cgroup(tmp_path):
    job = cgroups.JobCgroup(1, {"memory": tmp_path / "missing"}, 10)
    done = subprocess.run(cgroups.joining(["echo", "ran"], job), capture_output=True, text=True)
    assert done.returncode == 125 and "ran" not in done.stdout, done


def test_a_node_that_cannot_make_cgroups_says_so_once_and_watches_memory(tmp_path, monkeypatch, caplog):
    # A cgroup root with no controller mounted under it, as on a machine where /sys/fs/cgroup is not writable.
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    monkeypatch.setattr(cgroups, "_node", {})
    assert cgroups.for_job("plain", 1, 1, 100, 4096) is None
    assert cgroups.for_job("plain", 2, 1, 100, 4096) is None
    said = [r.getMessage() for r in caplog.records if "cannot be limited through cgroups" in r.getMessage()]
    assert len(said) == 1, said
    assert f"the cgroup v1 memory controller is not mounted at {tmp_path}/memory" in said[0]
    assert "watches their memory instead" in said[0] and "To fix:" in said[0]
    assert cgroups.enforcement("plain") == {"cpus": "affinity", "memory": "watch", "pids": None}


def test_dct_cgroups_off_turns_them_off(monkeypatch, caplog):
    monkeypatch.setattr(cgroups, "_node", {})
    assert cgroups.for_node("quiet", "off") is None
    assert "DCT_CGROUPS=off" in caplog.text


def test_favordynmods_is_read_from_any_cgroup_mount_and_only_from_cgroup_mounts():
    v1 = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    assert not cgroups.favors_dynmods(v1)
    assert cgroups.favors_dynmods("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nsdelegate,favordynmods 0 0\n")
    assert cgroups.favors_dynmods(v1 + "cgroup /sys/fs/cgroup/pids cgroup rw,pids,favordynmods 0 0\n")
    assert not cgroups.favors_dynmods("tmpfs /favordynmods tmpfs rw,favordynmods 0 0\n"), "not a cgroup mount"
    assert not cgroups.favors_dynmods("")


def test_spare_cgroups_are_named_apart_from_every_jobs(tmp_path):
    node = cgroups.NodeCgroups(1, {"memory": tmp_path / "m", "pids": tmp_path / "p"})
    for folder in node.dirs.values():
        folder.mkdir()
    first, second = node.make_spare(), node.make_spare()
    assert {d.name for d in first.dirs.values()} == {"next-0"} and second.dirs["pids"] == tmp_path / "p" / "next-1"
    assert all(d.is_dir() for d in [*first.dirs.values(), *second.dirs.values()])
