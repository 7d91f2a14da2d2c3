"""Attacks on the node's file work, through real jobs on real node workers (issue 14, items 2 and 7).

The node works as root on folders a job controls: every test here plants
something for it to follow, or leaves something for it to choke on, and
checks that the node neither follows nor chokes, that the job ends with a
reason a person can act on, and that the node goes on working.

`node-w` keeps warm sandboxes (the default); `node-cap` starts a fresh
sandbox per job and keeps at most DCT_MAX_OUTPUT_MB=5 of a job's outputs.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.request
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, wait_until
from tests.support.web import start_web

pytestmark = [pytest.mark.integration, pytest.mark.nodeside]

CAP_MB = 5


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        cluster.start_node("node-w", slots=1)
        cluster.start_node("node-cap", slots=1, env={"DCT_MAX_OUTPUT_MB": str(CAP_MB), "DCT_WARM_SANDBOXES": "0"})
        for name in ("node-w", "node-cap"):
            node = cluster.node(name)
            assert node["sandbox"] is True, f"bubblewrap must work here for these tests: {node}"
        cluster.web = start_web(cluster)
        cluster.token = cluster.cli("token", user="alice").stdout.strip()
        yield cluster


def _run(c: Cluster, folder: Path, text: str, files: dict[str, str], user: str = "alice") -> tuple[dict, str]:
    """Submit, wait for the end; (job, stdout)."""
    (job,) = c.submit(folder, text, files, user=user)
    done = c.wait_job(job["id"], user=user, timeout=120)
    return done, c.cli("logs", str(job["id"]), user=user).stdout


def _outputs(c: Cluster, job_id: int) -> Path:
    return c.workdir / "var" / "storage" / "jobs" / str(job_id) / "outputs"


def _scratch(c: Cluster, node: str) -> Path:
    return c.workdir / "var" / "scratch" / node


def _api(c: Cluster, path: str) -> tuple[int, object]:
    request = urllib.request.Request(c.web + path, headers={"Authorization": f"Token {c.token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, json.loads(answer.read())


def _tree(folder: Path) -> dict[str, str]:
    """Relative path -> what it is (and what a file holds), without following links."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = "link"
        elif path.is_file():
            found[rel] = path.read_text()
        else:
            found[rel] = "folder" if path.is_dir() else "other"
    return found


@pytest.fixture
def outside(tmp_path) -> Path:
    """Files and a folder outside every job's reach, as a host file or the project's virtualenv would be."""
    folder = tmp_path / "outside"
    (folder / "folder").mkdir(parents=True)
    (folder / "canary.txt").write_text("canary\n")
    (folder / "canary.txt").chmod(0o600)
    (folder / "hard.txt").write_text("hard canary\n")
    (folder / "hard.txt").chmod(0o600)
    return folder


def _unchanged(outside: Path, before: dict[str, tuple]) -> None:
    now = {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in outside.glob("*.txt")}
    assert now == before, "nothing outside the job's folder changed"
    assert os.listdir(outside / "folder") == [], "nothing was written into the folder outside"


def _state(outside: Path) -> dict[str, tuple]:
    return {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in outside.glob("*.txt")}


# --- item 2: the link planted for the next job ---------------------------------------------------


def test_links_planted_in_a_warm_folder_for_the_next_job_are_never_followed(c, tmp_path, outside):
    files = {"run.sh": "#!/bin/sh\ncat data.txt extra.txt\npwd\n", "data.txt": "data\n", "extra.txt": "extra\n"}
    text = "executable = run.sh\ndata = data.txt, extra.txt\nnode = node-w\n"
    first, out = _run(c, tmp_path / "first", text, files)
    assert first["state"] == "succeeded", first
    box = Path(out.splitlines()[-1])
    assert box.parent == _scratch(c, "node-w") and box.name.startswith("warm-"), out
    assert box.is_dir() and os.listdir(box) == [], "emptied and kept for alice's next job"
    # What a zygote taken over by the first job would do once the node has emptied the folder:
    # the next job's executable and inputs, named in advance, point outside.
    (box / "run.sh").symlink_to(outside / "canary.txt")
    (box / "data.txt").symlink_to(outside / "folder", target_is_directory=True)
    os.link(outside / "hard.txt", box / "extra.txt")
    before = _state(outside)

    second, out = _run(c, tmp_path / "second", text, files)
    assert second["state"] == "succeeded", second
    assert out.splitlines()[:2] == ["data", "extra"], out
    _unchanged(outside, before)
    assert not os.path.lexists(box), "the sandbox whose folder was not empty is retired, its folder removed"
    assert Path(out.splitlines()[-1]) != box, "the job ran in another, newly made sandbox"
    log = (c.logs / "node-w.log").read_text()
    assert f"warm sandbox {box.name}: its folder was not empty before staging; retiring it" in log
    assert not stat.S_IMODE((outside / "canary.txt").stat().st_mode) & 0o111, "no run bit through the link"


# --- links in the outputs, at every depth --------------------------------------------------------


def test_output_links_at_every_depth_fifos_and_hard_links_are_not_collected(c, tmp_path, outside):
    before = _state(outside)
    script = (
        "#!/bin/sh\nset -e\nmkdir -p a/b/c\necho real > a/b/c/real.txt\n"
        f"ln -s {outside}/canary.txt top-link\n"
        "ln -s /etc a/etc-link\n"
        f"ln -s {outside}/folder a/b/folder-link\n"
        f"ln -s {outside}/canary.txt a/b/c/canary-link\n"
        "mkfifo a/b/fifo\necho twice > h1\nln h1 h2\n"
    )
    done, _ = _run(c, tmp_path, "executable = links.sh\nnode = node-w\n", {"links.sh": script})
    assert done["state"] == "succeeded", done
    assert done["reason"] == "not collected: hard-linked files (copy them instead of linking): h1, h2", done
    assert _tree(_outputs(c, done["id"])) == {"a": "folder", "a/b": "folder", "a/b/c": "folder",
                                              "a/b/c/real.txt": "real\n"}  # fmt: skip
    _unchanged(outside, before)


@pytest.mark.parametrize("target", ["/etc", "outside"])
def test_an_output_folder_that_is_a_link_is_not_followed(c, tmp_path, outside, target):
    where = str(outside / "folder") if target == "outside" else target
    (outside / "folder" / "secret.txt").write_text("not the job's\n")
    script = f"#!/bin/sh\nln -s {where} results\nmkdir mine\nln -s {where} mine/inner\necho ok > mine/ok.txt\n"
    text = "executable = l.sh\ntransfer_output_files = results, mine\nnode = node-w\n"
    done, _ = _run(c, tmp_path, text, {"l.sh": script})
    assert done["state"] == "succeeded" and done["reason"] == "output not created: results", done
    assert _tree(_outputs(c, done["id"])) == {"mine": "folder", "mine/ok.txt": "ok\n"}
    assert (outside / "folder" / "secret.txt").read_text() == "not the job's\n"


# --- deep trees ---------------------------------------------------------------------------------

DEEP = """\
import os
for level in range(1, 1101):
    os.mkdir("d")
    os.chdir("d")
    if level in (50, 1100):
        with open(f"at-{level}.txt", "w") as f:
            f.write(f"{level}\\n")
print("deep", os.getcwd().count("/d"))
"""


@pytest.mark.parametrize("node", ["node-w", "node-cap"])
def test_a_1100_level_tree_ends_with_a_reason_and_leaves_no_scratch_behind(c, tmp_path, node):
    done, out = _run(c, tmp_path / "deep", f"executable = deep.py\nnode = {node}\n", {"deep.py": DEEP})
    assert done["state"] == "succeeded" and out == "deep 1100\n", (done, out)
    assert done["reason"].startswith("not collected: folders more than 100 levels deep: d/d/d/"), done
    collected = _outputs(c, done["id"])
    assert (collected / Path(*["d"] * 50) / "at-50.txt").read_text() == "50\n", "what lies above the limit comes back"
    status, listing = _api(c, f"/api/jobs/{done['id']}/files/")
    assert status == 200 and [f["path"] for f in listing["files"]] == ["/".join(["d"] * 50) + "/at-50.txt"]
    scratch = _scratch(c, node)
    if node == "node-cap":
        assert not os.path.lexists(scratch / f"job-{done['id']}-1"), "a fresh sandbox's folder is removed"
    else:
        assert all(os.listdir(box) == [] for box in scratch.glob("warm-*")), "the warm folder is emptied"
    after, out = _run(c, tmp_path / "after", f"executable = t.sh\nnode = {node}\n", {"t.sh": "#!/bin/sh\necho fine\n"})
    assert after["state"] == "succeeded" and out == "fine\n", "the node goes on working"


# --- sparse files and the output cap ---------------------------------------------------------------


@pytest.mark.parametrize("node", ["node-w", "node-cap"])
def test_a_sparse_3gb_output_stays_sparse_in_storage(c, tmp_path, node):
    script = "#!/bin/sh\ntruncate -s 3G big.bin\necho tail >> big.bin\n"
    done, _ = _run(c, tmp_path, f"executable = s.sh\nnode = {node}\n", {"s.sh": script})
    assert done["state"] == "succeeded" and done["reason"] == "", done
    big = (_outputs(c, done["id"]) / "big.bin").stat()
    assert big.st_size == (3 << 30) + 5
    assert big.st_blocks * 512 <= 1 << 20, f"{big.st_blocks * 512} bytes of real storage for a sparse file"


def test_outputs_over_the_cap_fail_the_job_naming_the_cap_and_storage_keeps_no_more(c, tmp_path):
    script = "#!/bin/sh\necho small > a-small.txt\nhead -c 10485760 /dev/urandom > b-data.bin\necho c > c-after.txt\n"
    done, _ = _run(c, tmp_path, "executable = w.sh\nnode = node-cap\n", {"w.sh": script})
    assert done["state"] == "failed", done
    assert done["reason"].startswith(
        f"outputs exceed DCT_MAX_OUTPUT_MB ({CAP_MB} MB): collection stopped at b-data.bin and kept only the files "
        "before it; write less, name only the files you need in output (transfer_output_files), or ask the operator"
    ), done
    outputs = _outputs(c, done["id"])
    assert _tree(outputs) == {"a-small.txt": "small\n"}
    held = sum(p.stat().st_blocks * 512 for p in outputs.rglob("*"))
    assert held <= CAP_MB << 20


# --- names that are not UTF-8 --------------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_left_out_and_every_view_of_the_job_still_works(c, tmp_path):
    script = "import os\nopen(b'\\xff.txt', 'w').write('x')\nos.mkdir(b'dir-\\xfe')\nopen('ok.txt', 'w').write('ok')\n"
    done, _ = _run(c, tmp_path, "executable = n.py\nnode = node-w\n", {"n.py": script})
    assert done["state"] == "succeeded", done
    assert done["reason"] == "not collected: a file name that is not UTF-8: dir-\\xfe, \\xff.txt", done
    status, job = _api(c, f"/api/jobs/{done['id']}/")
    assert status == 200 and job["reason"] == done["reason"]
    status, listing = _api(c, f"/api/jobs/{done['id']}/files/")
    assert status == 200 and listing == {"files": [{"path": "ok.txt", "size": 2}]}
    dest = tmp_path / "results"
    c.cli("results", str(done["id"]), "--dest", str(dest))
    assert (dest / "ok.txt").read_text() == "ok"
    assert "not UTF-8" in c.cli("job", str(done["id"])).stdout


LONG = """\
import os
for level in range(1, 31):
    os.mkdir("n" * 200)
    os.chdir("n" * 200)
    if level in (5, 30):
        open(f"at-{level}.txt", "w").write("x")
"""


def test_paths_longer_than_path_max_allows_are_left_out_and_the_file_list_still_works(c, tmp_path):
    done, _ = _run(c, tmp_path, "executable = long.py\nnode = node-w\n", {"long.py": LONG})
    assert done["state"] == "succeeded", done
    assert done["reason"].startswith("not collected: paths longer than 2048 bytes: nnnn"), done
    status, listing = _api(c, f"/api/jobs/{done['id']}/files/")
    assert status == 200 and listing == {"files": [{"path": "/".join(["n" * 200] * 5) + "/at-5.txt", "size": 1}]}


def test_the_node_is_still_well_after_all_this(c, tmp_path):
    for node in ("node-w", "node-cap"):
        done, out = _run(c, tmp_path / node, f"executable = t.sh\nnode = {node}\n", {"t.sh": "#!/bin/sh\necho ok\n"})
        assert done["state"] == "succeeded" and out == "ok\n", done
    wait_until(lambda: c.node("node-w", state_in=("available",)), 30, "node-w to be available")
    for node in ("node-w", "node-cap"):
        assert "Traceback" not in (c.logs / f"{node}.log").read_text(), f"{node} logged a traceback"
