"""network = private: a job's own network, outbound only; never the node's loopback services.

Real node workers, bubblewrap, pasta and slirp4netns.  The jobs attack: they
connect to the cluster's Redis and to a server of the test's on 127.0.0.1,
directly, through their namespace's gateway, and through the host's own
address.  This machine has no internet, so "outside" is a network namespace
joined by a veth pair (tests/support/netns.py), with an echo server in it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil
import pytest

from dctoolkit.nodes.worker import runner, sandbox, usernet, warm, workfiles
from tests.support.cluster import Cluster, wait_until
from tests.support.netns import Host, namespaces_available

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

# A job's connection attempts, one line each: "LABEL connected" or "LABEL ExceptionType errno".
PROBE = r"""
import socket, struct, sys

def gateway():
    for line in open("/proc/net/route").readlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    return None

print("interfaces", sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]))
for target in sys.argv[1:]:
    label, host, port = target.split("=")[0], *target.split("=")[1].rsplit(":", 1)
    host = gateway() if host == "GATEWAY" else host
    if host is None:
        print(label, "no gateway")
        continue
    try:
        with socket.create_connection((host, int(port)), 3) as c:
            c.sendall(b"hello")
            print(label, "connected", c.recv(100).decode() or "(nothing back)")
    except OSError as exc:
        print(label, type(exc).__name__, exc.errno)
"""

ECHO = r"""
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
def serve(c):
    with c:
        c.sendall(b"echo:" + c.recv(100))
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""
HELPER_NAMES = ("passt", "pasta", "slirp4netns")  # passt.avx2 is pasta's process name


class LoopbackServer:
    """A TCP server on 127.0.0.1, like Redis or PostgreSQL on a node: counts who got through."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.create_server((address, 0), family=family)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(b"loopback service")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """The cluster: node-p (DCT_DEFAULT_NETWORK=private), node-nh (no helper installed), an outside host."""
    why = namespaces_available()
    assert not why, f"the outside host needs network namespaces: {why}"
    home = tmp_path_factory.mktemp("net")
    # Under /opt, which sandboxes see: bubblewrap looks for the probe's `true` on the node's PATH.
    assert os.access("/opt", os.W_OK), "the tests make a PATH folder under /opt (they run as root in CI)"
    no_helper_bin = _bin_without_helpers(Path(tempfile.mkdtemp(prefix="dct-no-helper-", dir="/opt")) / "bin")
    outside = Host(200)
    outside.create()
    echo = subprocess.Popen(
        outside.command([sys.executable, "-c", ECHO, outside.ip, "7007"]), stdout=subprocess.PIPE, text=True
    )
    try:
        assert echo.stdout.readline().strip() == "ready", "the outside echo server did not start"
        with Cluster(home / "cluster") as c:
            c.start_node("node-p", env={"DCT_DEFAULT_NETWORK": "private"})
            c.start_node("node-nh", env={"PATH": str(no_helper_bin)})
            c.outside, c.no_helper_bin, c.loopback = outside, no_helper_bin, LoopbackServer()
            yield c
    finally:
        echo.kill()
        echo.wait()
        outside.destroy()
        shutil.rmtree(no_helper_bin.parent, ignore_errors=True)


def _bin_without_helpers(folder: Path) -> Path:
    """A PATH folder with every program of the system's but pasta and slirp4netns (and passt)."""
    folder.mkdir()
    for system in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for entry in os.scandir(system) if os.path.isdir(system) else ():
            if not entry.name.startswith(HELPER_NAMES) and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry.path)
    assert shutil.which("bwrap", path=str(folder)) and not usernet.find_helper(
        lambda n: shutil.which(n, path=str(folder))
    )
    return folder


def _run(c: Cluster, folder: Path, text: str, files: dict[str, str]) -> tuple[dict, str]:
    (job,) = c.submit(folder, text, files)
    done = c.wait_job(job["id"], timeout=90)
    return done, c.cli("logs", str(job["id"])).stdout


def _probe(c: Cluster, folder: Path, extra: str, *targets: str) -> tuple[dict, dict[str, str]]:
    """Run PROBE as a job; (the job, {label: what happened})."""
    text = f"executable = probe.py\narguments = {' '.join(targets)}\n{extra}"
    done, out = _run(c, folder, text, {"probe.py": PROBE})
    assert done["state"] == "succeeded", (done, out)
    return done, dict(line.split(" ", 1) for line in out.splitlines())


def _loopback_targets(c: Cluster) -> list[str]:
    port = c.loopback.port
    return [
        f"redis=127.0.0.1:{c.redis.port}",
        f"server=127.0.0.1:{port}",
        f"gateway=GATEWAY:{port}",
        f"host-address={_host_address()}:{port}",
    ]


def _host_address() -> str:
    """This machine's own address on its default route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the route
        return s.getsockname()[0]


def _helpers_under(pid: int) -> list[psutil.Process]:
    """The user-mode network helpers among `pid`'s descendants (a node worker's sandboxes')."""
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if p.name().startswith(HELPER_NAMES):
                found.append(p)
        except psutil.Error:
            pass
    return found


def _gone(procs: list[psutil.Process]) -> bool:
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


# --- the node -------------------------------------------------------------------------------------


def test_the_node_says_private_networking_works_and_which_helper_gives_it(net):
    helper = usernet.find_helper()
    assert helper is not None, usernet.unavailable_reason()
    log = (net.logs / "node-p.log").read_text()
    assert f"node node-p: network = private works here (through {helper.name})" in log, log


# --- the attacks ----------------------------------------------------------------------------------


def test_a_private_job_reaches_no_loopback_service_of_the_node(net, tmp_path):
    helper = usernet.find_helper().name
    _, seen = _probe(net, tmp_path / "p", "node = node-p\n", *_loopback_targets(net))  # private by default
    refused = "ConnectionRefusedError 111"  # the namespace's own loopback: nothing listens there
    # pasta sends the gateway's address to the real gateway (--no-map-gw), which refuses it, and
    # this pasta does not pass that refusal on; slirp4netns refuses the gateway itself.
    gateway = {"pasta": "TimeoutError None", "slirp4netns": "OSError 101"}[helper]
    assert seen == {
        "interfaces": seen["interfaces"],
        "redis": refused,
        "server": refused,
        "gateway": gateway,
        "host-address": refused,
    }, seen
    interfaces = json.loads(seen["interfaces"].replace("'", '"'))
    assert len(interfaces) == 2 and "lo" in interfaces, interfaces
    assert net.loopback.accepted == 0, "the loopback server was reached"


def test_a_private_job_reaches_the_outside(net, tmp_path):
    target = f"outside={net.outside.ip}:7007"
    _, seen = _probe(net, tmp_path / "o", "node = node-p\n", target)
    assert seen["outside"] == "connected echo:hello", seen


def test_network_is_chosen_per_job_host_reaches_loopback_none_has_only_lo(net, tmp_path):
    before = net.loopback.accepted
    _, host = _probe(net, tmp_path / "h", "node = node-p\nnetwork = host\n", f"server=127.0.0.1:{net.loopback.port}")
    assert host["server"] == "connected loopback service", host
    assert net.loopback.accepted == before + 1
    none_job = "node = node-p\nnetwork = none\n"
    _, none = _probe(net, tmp_path / "n", none_job, f"outside={net.outside.ip}:7007", "gateway=GATEWAY:1")
    assert none == {"interfaces": "['lo']", "outside": "OSError 101", "gateway": "no gateway"}, none


def test_a_private_job_where_no_helper_is_installed_fails_with_the_reason(net, tmp_path):
    log = (net.logs / "node-nh.log").read_text()
    assert "node node-nh: network = private cannot work here (neither pasta nor slirp4netns is installed" in log
    done, out = _run(net, tmp_path / "nh", "executable = t.sh\nnode = node-nh\nnetwork = private\n",
                     {"t.sh": "#!/bin/sh\necho ran\n"})  # fmt: skip
    assert done["state"] == "failed" and out == "", (done, out)
    assert done["reason"] == (
        "network = private cannot work on node-nh: neither pasta nor slirp4netns is installed; install "
        "Debian's 'passt' (or 'slirp4netns') package; submit it again with network = host or none, "
        "or pinned to another node (see './dct nodes')"
    ), done
    # The choice is still per job there: host works.
    done, out = _run(
        net, tmp_path / "nh-host", "executable = t.sh\nnode = node-nh\n", {"t.sh": "#!/bin/sh\necho ran\n"}
    )
    assert done["state"] == "succeeded" and out == "ran\n", (done, out)


def test_a_node_defaulting_to_private_without_a_helper_refuses_to_start(net):
    proc = net.start_node("node-r", wait=False, env={"PATH": str(net.no_helper_bin), "DCT_DEFAULT_NETWORK": "private"})
    wait_until(lambda: proc.poll() is not None, 60, "node-r to stop")
    log = (net.logs / "node-r.log").read_text()
    assert (
        "node start-up failed: DCT_DEFAULT_NETWORK=private, but a private network cannot work on node-r: "
        "neither pasta nor slirp4netns is installed" in log
    ), log
    assert "set DCT_DEFAULT_NETWORK to host or none; stopping this worker" in log, log
    assert net.node("node-r") is None, "it never registered, so no job went to it"


# --- the helper lives and dies with its sandbox ---------------------------------------------------


def test_the_helper_ends_with_its_sandbox_when_it_is_retired(net, tmp_path):
    worker = net.nodes["node-p"].pid
    done, _ = _run(net, tmp_path / "a", "executable = t.sh\nnode = node-p\n", {"t.sh": "#!/bin/sh\ntrue\n"})
    assert done["state"] == "succeeded", done
    helpers = _helpers_under(worker)
    assert len(helpers) == 1, f"one idle private sandbox, one helper: {helpers}"
    # What the zygote cannot clean away retires the sandbox (see test_warm_sandbox.py).
    locked = "#!/bin/sh\nmkdir /tmp/locked; touch /tmp/locked/f; chmod 0 /tmp/locked\n"
    done, _ = _run(net, tmp_path / "b", "executable = t.sh\nnode = node-p\n", {"t.sh": locked})
    assert done["state"] == "succeeded", done
    wait_until(lambda: _gone(helpers), 10, "the retired sandbox's helper to end")
    assert _helpers_under(worker) == [], "no helper without a private sandbox"


def test_the_helper_dies_with_a_killed_node(net, tmp_path):
    worker = net.nodes["node-p"].pid
    done, _ = _run(net, tmp_path / "k", "executable = t.sh\nnode = node-p\n", {"t.sh": "#!/bin/sh\ntrue\n"})
    assert done["state"] == "succeeded", done
    helpers = _helpers_under(worker)
    assert len(helpers) == 1, helpers
    net.kill_node("node-p")  # SIGKILL: nothing of the worker's runs to clean up
    wait_until(lambda: _gone(helpers), 10, "the helper to die with its node")


# --- each helper, without a cluster -----------------------------------------------------------------


@pytest.mark.parametrize("name", usernet.HELPERS)
def test_each_helper_gives_outbound_only_and_ends_with_its_idle_retired_sandbox(name, tmp_path, monkeypatch):
    path = shutil.which(name)
    assert path, f"{name} is missing (.ci/run installs it)"
    monkeypatch.setattr(usernet, "find_helper", lambda *a, **k: usernet.Helper(name, path))
    server, server6 = LoopbackServer(), LoopbackServer("::1")
    outside = Host(201)
    outside.create()
    echo = subprocess.Popen(
        outside.command([sys.executable, "-c", ECHO, outside.ip, "7007"]), stdout=subprocess.PIPE, text=True
    )
    pool = warm.WarmPool(tmp_path / "scratch", keep=2)
    try:
        assert echo.stdout.readline().strip() == "ready"
        box = pool.take(1, sandbox.Fence(workdir="", network="private"))
        (box.folder / "probe.py").write_text(PROBE)
        targets = [
            f"server=127.0.0.1:{server.port}",
            f"server6=::1:{server6.port}",
            f"gateway=GATEWAY:{server.port}",
            f"outside={outside.ip}:7007",
        ]
        spec = runner.RunSpec(
            job_id=1,
            workdir=box.folder,
            argv=[sandbox.python_executable(), "probe.py", *targets],
            env=runner.build_env({}, workdir=box.inside, extra={}),
            stdout_path=tmp_path / "out",
            stderr_path=tmp_path / "err",
        )
        result = runner.run(spec, lambda: "", box.start_job)
        assert result.exit_code == 0, (tmp_path / "err").read_text()
        seen = dict(line.split(" ", 1) for line in (tmp_path / "out").read_text().splitlines())
        gateway = {"pasta": "TimeoutError None", "slirp4netns": "OSError 101"}[name]
        assert seen["server"] == seen["server6"] == "ConnectionRefusedError 111", seen
        assert seen["gateway"] == gateway and seen["outside"] == "connected echo:hello", seen
        assert server.accepted == server6.accepted == 0
        helpers = _helpers_under(box.proc.pid)
        process_name = {"pasta": ("passt", "pasta"), "slirp4netns": ("slirp4netns",)}[name]
        assert [p.name().startswith(process_name) for p in helpers] == [True], helpers
        box.clean = workfiles.empty_folder(box.folder) and box.clean
        pool.give_back(box)
        assert not _gone(helpers), "an idle sandbox keeps its network"
        monkeypatch.setattr(warm, "IDLE_SECONDS", 0.0)
        pool.retire_stale()
        wait_until(lambda: _gone(helpers), 10, f"{name} to end with its idle sandbox")
    finally:
        pool.close()
        echo.kill()
        echo.wait()
        outside.destroy()


def test_a_sandbox_whose_network_does_not_come_up_never_runs(tmp_path, monkeypatch):
    # A helper that starts but configures nothing: the job must not run without its network.
    fake = tmp_path / "slirp4netns"
    fake.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/helper.pid\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setattr(usernet, "find_helper", lambda *a, **k: usernet.Helper("slirp4netns", str(fake)))
    marker = tmp_path / "ran"
    fence = sandbox.Fence(workdir=str(tmp_path), network="private")
    done = sandbox.run_fenced(["/bin/sh", "-c", f"touch {marker}"], fence, timeout=60)
    assert done.returncode == -9 and not marker.exists(), (done.returncode, done.stderr)
    helper = psutil.Process(int((tmp_path / "helper.pid").read_text()))
    wait_until(lambda: _gone([helper]), 10, "the helper to die with bubblewrap")


def test_a_fresh_sandbox_without_warm_ones_is_private_too_and_its_helper_ends_with_the_job(tmp_path):
    server = LoopbackServer()
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "probe.py").write_text(PROBE + "import time\ntime.sleep(1.5)\n")  # runner.run looks twice
    fence = sandbox.Fence(workdir=str(tmp_path / "job"), network="private")
    spec = runner.RunSpec(
        job_id=1,
        workdir=tmp_path / "job",
        argv=[sandbox.python_executable(), "probe.py", f"server=127.0.0.1:{server.port}"],
        env=runner.build_env({}, workdir=str(tmp_path / "job"), extra={}),
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        fence=fence,
    )
    seen_helpers: list[psutil.Process] = []

    def watch() -> str:  # runner.run's stop check, called while the job runs: note its helper
        seen_helpers.extend(p for p in _helpers_under(os.getpid()) if p not in seen_helpers)
        return ""

    result = runner.run(spec, watch)
    assert result.exit_code == 0, (tmp_path / "err").read_text()
    seen = dict(line.split(" ", 1) for line in (tmp_path / "out").read_text().splitlines())
    assert seen["server"] == "ConnectionRefusedError 111" and server.accepted == 0, seen
    assert len(seen_helpers) == 1, seen_helpers
    wait_until(lambda: _gone(seen_helpers), 10, "the helper to end with its sandbox")


@pytest.mark.parametrize("name", usernet.HELPERS)
def test_a_private_sandbox_leaves_the_hosts_other_network_namespaces_alone(name, monkeypatch):
    """As root, slirp4netns's own sandbox once unmounted the host's /run/netns entries (a shared mount):
    every named network namespace no process held was destroyed, links and all.  The helper now gets a
    mount namespace of its own."""
    path = shutil.which(name)
    assert path, f"{name} is missing (.ci/run installs it)"
    monkeypatch.setattr(usernet, "find_helper", lambda *a, **k: usernet.Helper(name, path))
    usernet.probe.cache_clear()
    bystander = Host(202)  # nothing runs in it: only its mount in /run/netns keeps it
    bystander.create()
    try:
        assert usernet.probe() == (True, name)
        mounts = Path("/proc/self/mountinfo").read_text()
        assert f"/run/netns/{bystander.ns} " in mounts, f"{name} unmounted the host's network namespace"
        link = subprocess.run(["ip", "link", "show", "dev", bystander.outside], capture_output=True, text=True)
        assert link.returncode == 0, f"{name} took the host's link with it: {link.stderr}"
    finally:
        usernet.probe.cache_clear()
        bystander.destroy()
