"""Every job in its own sandbox: real node workers, real bubblewrap, jobs that try to break out.

The module's cluster lives under /opt when it can (the tests run as root in CI):
/opt is bound read-only into every sandbox, so its storage, database and
var/ folder must be covered, not merely left out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

from dctoolkit.nodes.worker import sandbox
from tests.support.cluster import ROOT, Cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

SECRET_KEY = "integration-tests-only"  # what Cluster gives every process it starts
DOTENV_CANARY = "dotenv-canary-" + uuid.uuid4().hex

READ_ALL = """\
#!/bin/sh
# Try to read each path given; print what could be read.
for f in "$@"; do
  if cat "$f"; then echo "READ $f"; fi
done
"""


def _system_folder() -> Path:
    """A fresh folder under /opt when writable (bound into sandboxes), else under the temp folder."""
    base = "/opt" if os.access("/opt", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="dct-sandbox-test-", dir=base))


def _make_rootfs(root: Path) -> Path:
    """A tiny root filesystem: busybox (Debian's busybox-static) and an os-release of its own."""
    busybox = shutil.which("busybox")
    assert busybox, "install Debian's busybox-static package (.ci/run does)"
    (root / "bin").mkdir(parents=True)
    for name in ("proc", "dev", "tmp", "etc"):
        (root / name).mkdir()
    shutil.copy(busybox, root / "bin" / "busybox")
    for tool in ("sh", "cat", "ls", "grep", "id"):
        (root / "bin" / tool).symlink_to("busybox")
    (root / "etc" / "os-release").write_text('NAME="dct test root"\nID=dcttest\n')
    return root


@pytest.fixture(scope="module")
def sc(tmp_path_factory):
    """The cluster: `node-1` plain; `node-x` with a container, staff paths and no network by default."""
    home = _system_folder()
    # The read-only one where the sandbox binds nothing else (/var is never bound); the writable one under /tmp.
    ro = Path(tempfile.mkdtemp(prefix="dct-datasets-", dir="/var/tmp"))
    rw = tmp_path_factory.mktemp("extras") / "scratch"
    rw.mkdir()
    (ro / "readme.txt").write_text("dataset contents\n")
    rootfs = _make_rootfs(tmp_path_factory.mktemp("box") / "root")
    try:
        with Cluster(home / "cluster") as c:
            c.home, c.ro, c.rw, c.rootfs = home, ro, rw, rootfs
            c.start_node("node-1", slots=1)
            c.start_node(
                "node-x",
                slots=1,
                env={
                    "DCT_CONTAINERS": str(rootfs),
                    "DCT_SANDBOX_PATHS": f"{ro},{rw}:rw",
                    "DCT_DEFAULT_NETWORK": "none",
                },
            )
            yield c
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(ro, ignore_errors=True)


def _run(c: Cluster, folder: Path, text: str, files: dict[str, str], user: str = "alice") -> tuple[dict, str, str]:
    """Submit, wait for the end; (job, stdout, stderr)."""
    (job,) = c.submit(folder, text, files, user=user)
    done = c.wait_job(job["id"], user=user)
    out = c.cli("logs", str(job["id"]), user=user).stdout
    err = c.cli("logs", str(job["id"]), "--stderr", user=user).stdout
    return done, out, err


def test_nodes_say_their_jobs_are_fenced(sc):
    for name in ("node-1", "node-x"):
        node = sc.node(name)
        assert node["sandbox"] is True and node["accepts_jobs"] is True, node
    assert sc.node("node-x")["containers"] == [str(sc.rootfs)]


def test_a_job_cannot_read_other_jobs_the_database_the_project_or_the_worker(sc, tmp_path):
    (bobs,) = sc.submit(tmp_path / "bob", "executable = s.sh\n", {"s.sh": "#!/bin/sh\necho bob-private-words\n"}, "bob")
    assert sc.wait_job(bobs["id"], user="bob")["state"] == "succeeded"
    storage = sc.home / "cluster" / "var" / "storage"
    bobs_stdout = storage / "jobs" / str(bobs["id"]) / "stdout"
    assert bobs_stdout.read_text() == "bob-private-words\n"
    database = Path(sc.db.url.removeprefix("sqlite:///")) if sc.db.url.startswith("sqlite") else None
    dotenv = ROOT / ".env"
    assert not dotenv.exists(), "the test writes its own .env; remove the one in the project root"
    dotenv.write_text(f"DCT_TEST_DOTENV_CANARY={DOTENV_CANARY}\n")
    worker_pid = sc.nodes["node-1"].pid
    targets = [
        bobs_stdout,
        ROOT / ".env",
        ROOT / "dctoolkit" / "settings.py",
        f"/proc/{worker_pid}/environ",
        sc.home / "cluster" / "var" / "secret_key",
        *([database] if database else []),
    ]
    try:
        done, out, err = _run(
            sc,
            tmp_path / "alice",
            f"executable = read.sh\narguments = {' '.join(str(t) for t in targets)}\nnode = node-1\n",
            {"read.sh": READ_ALL},
        )
    finally:
        dotenv.unlink()
    assert done["state"] == "succeeded" and done["sandboxed"] is True, done
    assert "READ" not in out and "bob-private-words" not in out and DOTENV_CANARY not in out, out
    for target in targets:
        assert f"cat: {target}: No such file or directory" in err or f"cat: {target}: Permission denied" in err, err


def test_a_job_cannot_find_the_workers_environment_anywhere(sc, tmp_path):
    script = (
        "#!/bin/sh\nenv\ncat /proc/[0-9]*/environ | tr '\\0' '\\n'\n"
        # The key is split in two so that the script itself does not hold it.
        # Under /opt, the cluster's own folder (covered) and what sits beside it at the top: this
        # machine's /opt also holds gigabytes of package mirrors, which hold no key of ours.
        f"grep -rs '{SECRET_KEY[:5]}''{SECRET_KEY[5:]}' /etc /tmp /opt/dct-sandbox-test-* . && echo FOUND\n"
        f"grep -s '{SECRET_KEY[:5]}''{SECRET_KEY[5:]}' /opt/* && echo FOUND\n"
        "true\n"
    )
    done, out, _ = _run(sc, tmp_path, "executable = env.sh\nnode = node-1\n", {"env.sh": script})
    assert done["state"] == "succeeded", done
    assert "PATH=/usr/local/bin" in out, "the job's own environment is there"
    assert SECRET_KEY not in out and "REDIS_URL" not in out and "DATABASE_URL" not in out, out
    assert "FOUND" not in out


def test_a_job_has_no_capabilities_and_sees_only_its_own_processes(sc, tmp_path):
    script = "#!/bin/sh\ngrep -E '^Cap(Eff|Prm)' /proc/self/status\nls /proc | grep -c '^[0-9]'\n"
    done, out, _ = _run(sc, tmp_path, "executable = caps.sh\nnode = node-1\n", {"caps.sh": script})
    assert done["state"] == "succeeded", done
    assert "CapEff:\t0000000000000000" in out and "CapPrm:\t0000000000000000" in out, out
    # bwrap's init, the shell, ls and grep (and perhaps a pipe's subshell): a handful, not the machine's.
    assert int(out.split()[-1]) < 10, out


def test_system_secrets_in_etc_are_covered(sc, tmp_path):
    done, out, err = _run(sc, tmp_path, "executable = read.sh\narguments = /etc/shadow\nnode = node-1\n",
                          {"read.sh": READ_ALL})  # fmt: skip
    assert done["state"] == "succeeded", done
    assert "root:" not in out and "READ" not in out, out
    assert "/etc/shadow: Permission denied" in err or "/etc/shadow: No such file" in err, err


def _marker_processes(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if marker in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


def test_cancel_kills_a_setsid_daemon_too(sc, tmp_path):
    marker = f"{uuid.uuid4().int % 10**6}.25"
    script = f"#!/bin/sh\nsetsid sh -c 'sleep 3{marker}; : daemon' &\necho started\nsleep 4{marker}\n"
    (job,) = sc.submit(tmp_path, "executable = d.sh\nnode = node-1\n", {"d.sh": script})
    sc.wait_job(job["id"], states=("running",), timeout=30)
    wait_until(lambda: len(_marker_processes(marker)) >= 3, 30, "the daemon and the job's sleep to run")
    sc.cli("cancel", str(job["id"]))
    assert sc.wait_job(job["id"], timeout=30)["state"] == "cancelled"
    wait_until(lambda: not _marker_processes(marker), 10, "every process of the cancelled job to be gone")


def test_a_daemon_left_behind_ends_with_its_job(sc, tmp_path):
    marker = f"{uuid.uuid4().int % 10**6}.5"
    script = f"#!/bin/sh\n(setsid sh -c 'sleep 3{marker}; : daemon' &)\nsleep 1\necho left it\n"
    done, out, _ = _run(sc, tmp_path, "executable = d.sh\nnode = node-1\n", {"d.sh": script})
    assert done["state"] == "succeeded" and out == "left it\n", done
    wait_until(lambda: not _marker_processes(marker), 10, "the daemon to end with its job")


def test_network_none_cannot_reach_the_nodes_redis_and_the_default_can(sc, tmp_path):
    probe = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), 5).close()\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('no connection:', exc)\n"
    )
    port = str(sc.redis.port)
    runs = {
        "host": "node = node-1\n",
        "none": "node = node-1\nnetwork = none\n",
        "node default none": "node = node-x\n",
        "host on a none node": "node = node-x\nnetwork = host\n",
    }
    outs = {}
    for label, extra in runs.items():
        done, outs[label], _ = _run(sc, tmp_path / label.replace(" ", "-"), f"executable = net.py\narguments = {port}\n"
                                    + extra, {"net.py": probe})  # fmt: skip
        assert done["state"] == "succeeded", done
    assert outs["host"] == "connected\n" and outs["host on a none node"] == "connected\n", outs
    assert outs["none"].startswith("no connection:") and outs["node default none"].startswith("no connection:"), outs


def test_a_container_job_sees_its_own_root_filesystem(sc, tmp_path):
    script = "#!/bin/sh\ncat /etc/os-release\nls /\necho made > made.txt\nls /usr 2>&1 || true\n"
    done, out, err = _run(sc, tmp_path, f"executable = show.sh\ncontainer = {sc.rootfs}\n", {"show.sh": script})
    assert done["state"] == "succeeded" and done["node"] == "node-x", (done["reason"], err)
    assert "ID=dcttest" in out, out
    assert "ls: /usr: No such file or directory" in out, "the host's /usr is not in a container"
    task = tmp_path / f"TASK{done['id']}"
    sc.cli("results", str(done["id"]), "--dest", str(task))
    assert (task / "made.txt").read_text() == "made\n", "a container job writes its own folder"


def test_an_unknown_container_is_refused_with_the_list_of_containers(sc, tmp_path):
    (tmp_path / "job.txt").write_text("executable = x.sh\ncontainer = /srv/no-such-root\n")
    (tmp_path / "x.sh").write_text("#!/bin/sh\ntrue\n")
    done = sc.cli("submit", "job.txt", cwd=tmp_path, check=False)
    assert done.returncode != 0
    assert "job.txt:2: no node offers container '/srv/no-such-root'" in done.stderr, done.stderr
    assert f"containers offered: {sc.rootfs}" in done.stderr, done.stderr


def test_staff_paths_read_only_and_writable(sc, tmp_path):
    script = (
        f"#!/bin/sh\ncat {sc.ro}/readme.txt\n"
        f"echo no > {sc.ro}/new.txt || echo ro-refused\n"
        f"echo yes > {sc.rw}/from-job.txt && echo rw-written\n"
    )
    done, out, err = _run(sc, tmp_path, "executable = p.sh\nnode = node-x\n", {"p.sh": script})
    assert done["state"] == "succeeded", done
    assert out == "dataset contents\nro-refused\nrw-written\n", (out, err)
    assert "Read-only file system" in err, err
    assert not (sc.ro / "new.txt").exists()
    assert (sc.rw / "from-job.txt").read_text() == "yes\n"


def test_job_shows_whether_it_ran_fenced(sc, tmp_path):
    done, _, _ = _run(sc, tmp_path, "executable = t.sh\nnode = node-1\n", {"t.sh": "#!/bin/sh\ntrue\n"})
    text = sc.cli("job", str(done["id"])).stdout
    assert "sandboxed" in text and "yes" in text.split("sandboxed", 1)[1].splitlines()[0], text


# --- the fence alone: real bubblewrap, no cluster -------------------------------------------------


def _fenced(argv: list[str], fence: sandbox.Fence) -> subprocess.CompletedProcess:
    with sandbox.launch(argv, fence, sandbox.HELPER_ENV) as cmd:
        return subprocess.run(
            cmd.argv, env=sandbox.HELPER_ENV, pass_fds=cmd.fds, capture_output=True, text=True, timeout=60
        )


def test_hidden_folders_under_bound_system_and_staff_paths_are_covered(tmp_path):
    home = _system_folder()
    try:
        project, data = home / "project", tmp_path / "shared"
        (project / ".venv").mkdir(parents=True)
        (project / ".env").write_text("SECRET_KEY=x\n")
        (project / ".venv" / "tool.txt").write_text("venv file\n")
        (data / "datasets").mkdir(parents=True)
        (data / "datasets" / "d.txt").write_text("dataset\n")
        (data / "storage").mkdir()
        (data / "storage" / "other.txt").write_text("another user's output\n")
        workdir = tmp_path / "job"
        workdir.mkdir()
        fence = sandbox.Fence(
            workdir=str(workdir),
            extra_paths=(sandbox.ExtraPath(str(data)),),
            hidden=(str(project), str(data / "storage")),
        )
        done = _fenced(["sh", "-c", f"ls -A {project}; cat {data}/datasets/d.txt {data}/storage/other.txt"], fence)
        assert "dataset\n" in done.stdout
        assert ".env" not in done.stdout and "another user's output" not in done.stdout, done.stdout
        assert "other.txt: No such file or directory" in done.stderr, done.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("where", ["system folder", "/tmp"])
def test_a_python_environment_inside_the_hidden_project_stays_visible(where, tmp_path, monkeypatch):
    home = _system_folder() if where == "system folder" else Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        project = home / "project"
        (project / ".venv").mkdir(parents=True)
        (project / ".env").write_text("SECRET_KEY=x\n")
        (project / ".venv" / "tool.txt").write_text("venv file\n")
        real = sandbox.python_paths()
        # As when the project, with its .venv, lies under /opt: the .venv must be bound again over the cover.
        monkeypatch.setattr(sandbox, "python_paths", lambda: [*real, str(project / ".venv")])
        workdir = tmp_path / "job"
        workdir.mkdir()
        fence = sandbox.Fence(workdir=str(workdir), hidden=(str(project),))
        done = _fenced(["sh", "-c", f"ls -A {project}; cat {project}/.venv/tool.txt"], fence)
        assert done.stdout == ".venv\nvenv file\n", (done.stdout, done.stderr)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_path_under_tmp_is_shown_after_the_private_tmp(tmp_path):
    shared = tmp_path / "under-tmp"
    shared.mkdir()
    (shared / "x.txt").write_text("visible\n")
    workdir = tmp_path / "job"
    workdir.mkdir()
    fence = sandbox.Fence(workdir=str(workdir), extra_paths=(sandbox.ExtraPath(str(shared), writable=True),))
    done = _fenced(["sh", "-c", f"cat {shared}/x.txt && echo w > {shared}/y.txt && ls /tmp | wc -l"], fence)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("visible\n")
    assert (shared / "y.txt").read_text() == "w\n"


# --- nodes that cannot fence -----------------------------------------------------------------------


def test_a_node_without_bubblewrap_says_so_and_runs_unfenced_only_when_allowed(tmp_path):
    with Cluster(tmp_path / "cluster") as c:
        rootfs = _make_rootfs(tmp_path / "root")
        unfenced = {"DCT_BWRAP": "/nonexistent/bwrap", "DCT_REQUIRE_SANDBOX": "0", "DCT_CONTAINERS": str(rootfs)}
        c.start_node("open", env=unfenced)
        c.start_node("strict", wait=False, env={"DCT_BWRAP": "/nonexistent/bwrap", "DCT_REQUIRE_SANDBOX": "1"})
        strict = wait_until(lambda: c.node("strict", state_in=("refusing",)), 60, "node strict to refuse jobs")
        assert strict["sandbox"] is False and strict["accepts_jobs"] is False
        open_node = c.node("open")
        assert open_node["sandbox"] is False and open_node["accepts_jobs"] is True
        assert open_node["containers"] == [], "a container is a sandbox's root: none without the sandbox"
        text = c.cli("nodes").stdout
        assert "OFF" in text.split("open", 1)[1].splitlines()[0], text
        log = (c.logs / "strict.log").read_text()
        assert "DCT_BWRAP=/nonexistent/bwrap is not an executable file" in log and "takes no jobs" in log, log
        assert "jobs run UNFENCED" in (c.logs / "open.log").read_text()

        # bob's: a user's later jobs wait behind their first, and this one never starts.
        (held,) = c.submit(tmp_path / "s", "executable = t.sh\nnode = strict\n", {"t.sh": "#!/bin/sh\nls\n"}, "bob")
        (ran,) = c.submit(tmp_path / "o", "executable = t.sh\nnode = open\n", {"t.sh": "#!/bin/sh\nls -d /root\n"})
        done = c.wait_job(ran["id"])
        assert done["state"] == "succeeded" and done["sandboxed"] is False, done
        assert c.cli("logs", str(ran["id"])).stdout == "/root\n", "unfenced: the host's own /"
        shown = c.cli("job", str(ran["id"])).stdout
        assert "sandboxed" in shown and "no" in shown.split("sandboxed", 1)[1].splitlines()[0], shown
        (cut,) = c.submit(tmp_path / "n", "executable = t.sh\nnode = open\nnetwork = none\n", {"t.sh": "#!/bin/sh\n"})
        refused = c.wait_job(cut["id"])
        assert refused["state"] == "failed" and refused["reason"].startswith("network = none needs the sandbox"), (
            refused
        )
        waiting = c.job(held["id"], user="bob")
        assert waiting["state"] == "queued" and waiting["node"] is None, waiting
        assert "strict" in waiting["reason"], waiting


def test_a_killed_node_takes_its_jobs_processes_with_it(tmp_path):
    with Cluster(tmp_path / "cluster") as c:
        c.start_node("node-1")
        marker = f"{uuid.uuid4().int % 10**6}.75"
        script = f"#!/bin/sh\nsetsid sh -c 'sleep 3{marker}; : daemon' &\nsleep 4{marker}\n"
        (job,) = c.submit(tmp_path / "j", "executable = d.sh\n", {"d.sh": script})
        c.wait_job(job["id"], states=("running",), timeout=30)
        wait_until(lambda: len(_marker_processes(marker)) >= 3, 30, "the daemon and the job's sleep to run")
        c.kill_node("node-1")
        wait_until(lambda: not _marker_processes(marker), 10, "every process of the lost node's job to be gone")
