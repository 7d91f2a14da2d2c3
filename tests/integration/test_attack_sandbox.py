"""Attacks on how a job is started (issue 14, items 1, 2 and 6), made for real.

A shared library whose constructor leaves a canary file is compiled here; jobs
name it in LD_PRELOAD, LD_AUDIT and GCONV_PATH (the rows are written past the
submission parser, as a row from an older server or straight into the
database would be), pad their environment to the cap, attack the zygote and
bubblewrap's init with ptrace, /proc/PID/mem and process_vm_writev, try new
namespaces, and look for their variables in host processes' command lines.
The cluster has a node with warm sandboxes, one without (DCT_WARM_SANDBOXES=0)
and one with no bubblewrap at all (unfenced).  The node-level tests at the end
bypass the node's own check too, to show the starting itself gives nothing away.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from dctoolkit.jobs import jobenv
from dctoolkit.nodes.worker import runner, sandbox, warm
from tests.support.cluster import PYTHON, ROOT, Cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

WARM, COLD, OPEN = "warm", "cold", "open"
ATTACK = (ROOT / "tests" / "support" / "attack_job.py").read_text()
LOADER_REFUSAL = (
    "may not be set by a job: it makes programs load code the job names; set it inside your job's script instead"
)
EVIL_C = r"""
#include <stdio.h>
#include <unistd.h>
static void leave(const char *how) {
    const char *canaries[] = {%s};
    for (unsigned i = 0; i < sizeof canaries / sizeof *canaries; i++) {
        FILE *f = fopen(canaries[i], "a");
        if (f) { fprintf(f, "%%s ran in pid %%d as uid %%d\n", how, getpid(), getuid()); fclose(f); }
    }
}
__attribute__((constructor)) static void on_load(void) { leave("constructor"); }
unsigned int la_version(unsigned int version) { leave("LD_AUDIT"); return version; }
int gconv_init(void *step) { leave("gconv"); return 1; }
int gconv(void *step, void *data, const unsigned char **in, const unsigned char *end,
          unsigned char **out, size_t *irreversible, int flush, int consume) { return 1; }
"""


@dataclass(frozen=True)
class Evil:
    library: Path
    gconv: Path  # a folder with gconv-modules naming the library
    canaries: tuple[Path, ...]

    def environments(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(self.library),
            "LD_AUDIT": str(self.library),
            "GCONV_PATH": str(self.gconv),
            "GLIBC_TUNABLES": "glibc.malloc.mxfast=0",
        }

    def left(self) -> list[str]:
        return [f"{p}: {p.read_text()}" for p in self.canaries if p.exists()]


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """The library, proven to be a real escape: on the host, LD_PRELOAD runs its constructor."""
    gcc = shutil.which("gcc")
    assert gcc, "install gcc (Debian's gcc package): these tests compile the library a job would upload"
    folder = tmp_path_factory.mktemp("evil")
    canaries = (folder / "canary-host", Path(f"/tmp/dct-canary-{uuid.uuid4().hex}"))
    (folder / "evil.c").write_text(EVIL_C % ", ".join(f'"{c}"' for c in canaries))
    library = folder / "evil.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-o", library, folder / "evil.c"], check=True)
    (folder / "gconv").mkdir()
    (folder / "gconv" / "gconv-modules").write_text(f"module INTERNAL EVIL// {library.with_suffix('')} 1\n")
    made = Evil(library, folder / "gconv", canaries)
    subprocess.run(["true"], env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(library)}, check=True)
    assert all(c.exists() for c in canaries), "the library works: on the host it writes its canaries"
    for canary in canaries:
        canary.unlink()
    yield made
    for canary in canaries:
        canary.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def ac(tmp_path_factory):
    """Warm sandboxes on `warm`, off on `cold`, no bubblewrap on `open`; one slot each."""
    with Cluster(tmp_path_factory.mktemp("cluster")) as c:
        c.start_node(WARM, slots=1)
        c.start_node(COLD, slots=1, env={"DCT_WARM_SANDBOXES": "0"})
        c.start_node(OPEN, slots=1, env={"DCT_BWRAP": "/nonexistent/bwrap", "DCT_REQUIRE_SANDBOX": "0"})
        c.scripts = tmp_path_factory.mktemp("scripts")
        yield c


def django(c: Cluster, code: str, **params) -> object:
    """Run `code` in the cluster's Django (params as `order`); returns the JSON it printed last."""
    order = c.scripts / f"{uuid.uuid4().hex}.json"
    order.write_text(json.dumps(params))
    preamble = f"import json\nfrom pathlib import Path\norder = json.loads(Path({str(order)!r}).read_text())\n"
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", preamble + code],
        cwd=ROOT,
        env=c.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


STORE = """
from dataclasses import replace
from django.contrib.auth import get_user_model
from dctoolkit.jobs.intake import queue as submit
prepared = submit.prepare(order["text"], "job.txt", submit.FolderFiles(Path(order["folder"])))
owner, _ = get_user_model().objects.get_or_create(username=order["user"])
ids = []
for changes in order["changes"]:
    jobs = tuple(replace(j, **changes) for j in prepared.submission.jobs)
    ids += [j.id for j in submit.queue(replace(prepared, submission=replace(prepared.submission, jobs=jobs)), owner)]
print(json.dumps(ids))
"""

SETTLE = """
import time
from dctoolkit.jobs.models import FINAL_STATES, Job
deadline = time.monotonic() + order["timeout"]
while time.monotonic() < deadline:
    jobs = list(Job.objects.filter(id__in=order["ids"]).select_related("node"))
    if all(j.state in FINAL_STATES for j in jobs):
        break
    time.sleep(0.2)
def text(path):
    return path.read_text(errors="replace") if path.exists() else ""
print(json.dumps({j.id: {"state": j.state, "reason": j.reason, "node": j.node.name if j.node else None,
                         "stdout": text(j.folder() / "stdout"), "stderr": text(j.folder() / "stderr")}
                  for j in jobs}))
"""


def store(c: Cluster, folder: Path, text: str, files: dict[str, str], environments: list[dict], user="alice") -> list:
    """Queue one job per environment, past the submission parser (which refuses loader variables).

    An entry of `environments` may instead be {"changes": {...}}: other fields of the parsed job to set.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(content)
        (folder / name).chmod(0o755)
    changes = [e.get("changes", {"environment": e}) for e in environments]
    return django(c, STORE, text=text, folder=str(folder), user=user, changes=changes)


def settle(c: Cluster, ids: list[int], timeout: float = 120) -> dict[int, dict]:
    """Each job once it has ended: state, reason, node, stdout, stderr (read from the database and storage)."""
    found = django(c, SETTLE, ids=ids, timeout=timeout)
    return {int(k): v for k, v in found.items()}


def padded_to(size: int, name: str = "PAD", **others: str) -> dict[str, str]:
    """An environment of exactly `size` bytes as the cap counts them, padded with what JSON would escape."""
    env = dict(others)
    room = size - jobenv.env_and_args_bytes({**env, name: ""}, [])
    env[name] = ('"\\\x01\n\t' * room)[:room]
    assert jobenv.env_and_args_bytes(env, []) == size
    return env


# --- the loader variables: refused on every node, and nothing runs anywhere ------------------------


def test_a_stored_loader_variable_fails_the_job_on_every_node_and_runs_nothing(ac, evil, tmp_path):
    tried = [(name, {name: value}) for name, value in evil.environments().items()]
    padded = padded_to(jobenv.MAX_ENV_AND_ARGS_BYTES - 100, LD_PRELOAD=str(evil.library))
    cases = []
    for node in (WARM, COLD, OPEN):
        names = [name for name, _ in tried] + (["LD_PRELOAD"] if node != OPEN else [])
        envs = [env for _, env in tried] + ([padded] if node != OPEN else [])
        text = f"executable = run.sh\nnode = {node}\n"
        ids = store(ac, tmp_path / node, text, {"run.sh": "#!/bin/sh\necho RAN\n"}, envs)
        cases += [(job_id, node, name) for job_id, name in zip(ids, names, strict=True)]
    ended = settle(ac, [job_id for job_id, _, _ in cases])
    for job_id, node, name in cases:
        job = ended[job_id]
        assert (job["state"], job["node"]) == ("failed", node), (name, job)
        assert job["reason"] == f"not started: environment: '{name}' {LOADER_REFUSAL}", (node, job)
        assert job["stdout"] == "" and job["stderr"] == "", (node, job)
    assert evil.left() == [], "the library ran somewhere"
    # What its owner reads, through the command line.
    shown = ac.job(cases[0][0])
    assert shown["state"] == "failed" and shown["reason"] == f"not started: environment: 'LD_PRELOAD' {LOADER_REFUSAL}"


# --- padding to the cap: runs where it should, or fails; never anywhere weaker -----------------------

PAD_CHECK = '#!/bin/sh\necho pid=$$\nprintf %s "$PAD" | wc -c\n'


def test_an_environment_at_the_cap_runs_in_its_warm_sandbox_and_one_byte_more_fails(ac, tmp_path):
    at_cap = padded_to(jobenv.MAX_ENV_AND_ARGS_BYTES)
    over = padded_to(jobenv.MAX_ENV_AND_ARGS_BYTES + 1)
    ids = {}
    for node in (WARM, COLD):
        text = f"executable = pad.sh\nnode = {node}\n"
        ids[node] = store(ac, tmp_path / node, text, {"pad.sh": PAD_CHECK}, [at_cap, over])
    ended = settle(ac, [i for pair in ids.values() for i in pair])
    for node, (fits, too_big) in ids.items():
        ran, refused = ended[fits], ended[too_big]
        assert ran["state"] == "succeeded", (node, ran)
        pid, size = ran["stdout"].split()
        assert int(size) == len(at_cap["PAD"].encode()), "the job got its whole environment"
        # In a warm sandbox the zygote is pid 2 and the job comes after it; in a fresh one the job is pid 2.
        assert (int(pid.removeprefix("pid=")) > 2) == (node == WARM), (node, ran["stdout"])
        assert refused["state"] == "failed", (node, refused)
        assert refused["reason"] == (
            f"not started: environment and arguments take {jobenv.MAX_ENV_AND_ARGS_BYTES + 1:,} bytes; "
            f"the limit is {jobenv.MAX_ENV_AND_ARGS_BYTES:,}"
        )


# --- the zygote and bubblewrap's init cannot be touched, and the next job is fine ------------------


def attack_expectations(node: str) -> dict[str, str]:
    expected = {
        "ptrace-parent": "EPERM",
        "ptrace-init": "EPERM",
        "seize-parent": "EPERM",
        "mem-init": "ENOENT",  # /proc/1 is covered
        "mem-init-task": "ENOENT",
        "vm-write-parent": "EPERM",
        "vm-read-parent": "EPERM",
        "unshare-user": "EPERM",
        "unshare-mount": "EPERM",
        "clone-user": "EPERM",
        "clone3": "ENOSYS",
        "setns": "EPERM",
        "mount": "EPERM",
        "bpf": "EPERM",
        "keyctl": "EPERM",
        "perf_event_open": "EPERM",
        "userfaultfd": "EPERM",
        "io_uring_setup": "EPERM",
        "filter": "2",  # Seccomp: 2, a filter
        "thread": "OK",
        "fork": "7",
        "subprocess": "OK",
    }
    if platform.machine() == "x86_64":
        expected["x32"] = "EPERM"
    if node == WARM:  # the job's parent is the zygote: not dumpable, and filtered too
        expected |= {"parent": "2", "mem-parent": "EACCES", "mem-parent-task": "EACCES", "parent-filter": "2"}
    else:  # the job's parent is bubblewrap's init
        expected |= {"parent": "1", "mem-parent": "ENOENT", "mem-parent-task": "ENOENT"}
    return expected


@pytest.mark.parametrize("node", [WARM, COLD])
def test_a_job_cannot_touch_its_zygote_or_the_sandboxs_init_and_the_next_job_runs(ac, tmp_path, node):
    (attack,) = ac.submit(tmp_path / "attack", f"executable = attack.py\nnode = {node}\n", {"attack.py": ATTACK})
    (after,) = ac.submit(
        tmp_path / "after", f"executable = ok.sh\nnode = {node}\n", {"ok.sh": "#!/bin/sh\necho fine\n"}
    )
    ended = settle(ac, [attack["id"], after["id"]])
    tried = ended[attack["id"]]
    assert tried["state"] == "succeeded", tried
    said = dict(line.split(" ", 1) for line in tried["stdout"].splitlines())
    assert said == attack_expectations(node), tried["stdout"]
    assert (ended[after["id"]]["state"], ended[after["id"]]["stdout"]) == ("succeeded", "fine\n"), ended[after["id"]]


# --- a job's variables are on no host process's command line or environment ----------------------


def _cmdline(p: psutil.Process) -> str:
    try:
        return "\0".join(p.cmdline())
    except psutil.Error:
        return ""


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("node", [WARM, COLD])
def test_no_host_process_shows_a_jobs_variables_but_the_job_itself(ac, tmp_path, node):
    marker = f"value-{uuid.uuid4().hex}"
    seconds = f"{uuid.uuid4().int % 10**6 + 1000}.5"
    text = f'executable = s.sh\nnode = {node}\nenvironment = "JOB_MARK={marker}"\n'
    (job,) = ac.submit(tmp_path, text, {"s.sh": f"#!/bin/sh\nexec sleep {seconds}\n"})
    try:
        (sleeper,) = wait_until(
            lambda: [p for p in psutil.process_iter() if _cmdline(p) == f"sleep\0{seconds}"], 60, "the job to run"
        )
        helpers = [p for p in sleeper.parents() if os.path.basename(_cmdline(p).split("\0")[0]) == "bwrap"]
        assert helpers, "the job runs under bubblewrap (its monitor outside, its init inside)"
        if node == WARM:
            assert "-c" in _cmdline(sleeper.parent()).split("\0"), "the warm job's parent is the zygote"
        for p in psutil.process_iter():
            assert marker not in _cmdline(p), f"pid {p.pid} shows the job's variable on its command line"
            if marker.encode() in _environ(p.pid):
                assert p.pid == sleeper.pid, f"pid {p.pid} ({_cmdline(p)!r}) holds the job's variable"
        assert marker.encode() in _environ(sleeper.pid), "the job itself has its variable"
    finally:
        ac.cli("cancel", str(job["id"]))
    assert settle(ac, [job["id"]])[job["id"]]["state"] == "cancelled"


# --- the starting itself: even a job the node's own check let through gives nothing away -----------


def _spec(folder: Path, inside: str, env: dict[str, str], out: Path, fence: sandbox.Fence | None = None):
    (folder / "job.sh").write_text("#!/bin/sh\necho ran\n")
    (folder / "job.sh").chmod(0o755)
    return runner.RunSpec(
        1, folder, ["./job.sh"], runner.build_env(env, workdir=inside, extra={}), out / "o", out / "e", fence=fence
    )


def test_a_fresh_bubblewrap_never_loads_a_jobs_preload_on_the_host(evil, tmp_path):
    workdir = tmp_path / "job"
    workdir.mkdir()
    fence = sandbox.Fence(workdir=str(workdir), hidden=(str(ROOT),))
    spec = _spec(workdir, str(workdir), evil.environments(), tmp_path, fence)
    assert spec.refusal == "", "the node's own check is bypassed here: only the start is tried"
    result = runner.run(spec, lambda: "")
    assert result.exit_code == 0 and (tmp_path / "o").read_text() == "ran\n", (result, (tmp_path / "e").read_text())
    assert evil.left() == [], "bubblewrap ran the job's library on the host"


def test_a_warm_sandbox_that_cannot_take_a_job_fails_it_and_starts_nothing_weaker(evil, tmp_path):
    # The attack at the node: LD_PRELOAD and 300 KB of padding, so that the message is too long.
    pool = warm.WarmPool(tmp_path / "scratch", keep=2)
    try:
        box = pool.take(1, sandbox.Fence(workdir="", hidden=(str(ROOT),)))
        env = {"LD_PRELOAD": str(evil.library), **{f"PAD{i}": "x" * 1000 for i in range(300)}}
        spec = _spec(box.folder, box.inside, env, tmp_path)
        result = runner.run(spec, lambda: "", box.start_job)
        pool.give_back(box)
    finally:
        pool.close()
    assert result.exit_code is None and result.error.startswith(
        "not started: its warm sandbox could not take it: its environment and arguments make a "
    ), result
    assert result.error.endswith(
        "more than the 131,072 bytes a sandbox takes (the sandbox was retired); "
        "make its environment and arguments smaller"
    ), result.error
    assert (tmp_path / "o").read_text() == "", "the job ran nowhere"
    assert not box.alive and not box.folder.exists(), "the sandbox was retired"
    assert evil.left() == [], "the library ran on the host"
