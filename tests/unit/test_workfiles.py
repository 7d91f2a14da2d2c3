"""The node's file work on a job's folder, on plain temp folders: what a job plants is never followed.

Real files, links, FIFOs and deep trees; no sandbox needed (the cluster tests in
tests/integration/test_attack_files.py do the same through real jobs).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from dctoolkit.nodes.worker import workfiles


@pytest.fixture
def source(tmp_path) -> Path:
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "data.txt").write_text("input data\n")
    return folder


@pytest.fixture
def canary(tmp_path) -> Path:
    path = tmp_path / "outside" / "canary.txt"
    path.parent.mkdir()
    path.write_text("canary\n")
    path.chmod(0o600)
    return path


def _deep(top: Path, levels: int) -> Path:
    """A chain of `levels` folders under `top`, made without long paths; returns the first."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    return top / "d"


def test_staging_copies_the_files_and_gives_the_executable_its_run_bit(source, tmp_path):
    work = tmp_path / "work"
    workfiles.stage_inputs(source, ["data.txt"], work, "run.sh")
    assert (work / "data.txt").read_text() == "input data\n"
    assert (work / "run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert os.access(work / "run.sh", os.X_OK) and (work / "run.sh").stat().st_mode & 0o100
    assert not (work / "data.txt").stat().st_mode & 0o111


@pytest.mark.parametrize("planted", ["run.sh", "data.txt"])
def test_staging_refuses_a_planted_symlink_and_writes_nothing_through_it(source, tmp_path, canary, planted):
    work = tmp_path / "work"
    work.mkdir()
    (work / planted).symlink_to(canary)
    before = canary.stat()
    with pytest.raises(FileExistsError, match="the node did not put it there") as caught:
        workfiles.stage_inputs(source, ["data.txt"], work, "run.sh")
    assert caught.value.filename == planted
    after = canary.stat()
    assert canary.read_text() == "canary\n", "nothing written through the link"
    assert stat.S_IMODE(after.st_mode) == 0o600, "no chmod through the link either"
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


def test_staging_refuses_a_planted_hard_link_and_a_link_to_a_folder(source, tmp_path, canary):
    work = tmp_path / "work"
    work.mkdir()
    (source / "other.sh").write_text("#!/bin/sh\n")
    os.link(canary, work / "run.sh")
    (work / "data.txt").symlink_to(canary.parent, target_is_directory=True)
    with pytest.raises(FileExistsError):
        workfiles.stage_inputs(source, [], work, "run.sh")
    with pytest.raises(FileExistsError):
        workfiles.stage_inputs(source, ["data.txt"], work, "other.sh")
    assert canary.read_text() == "canary\n" and stat.S_IMODE(canary.stat().st_mode) == 0o600
    assert os.listdir(canary.parent) == ["canary.txt"], "nothing staged into the linked folder"


def test_staging_into_a_folder_that_is_a_symlink_is_refused(source, tmp_path, canary):
    (tmp_path / "work").symlink_to(canary.parent, target_is_directory=True)
    with pytest.raises(OSError):
        workfiles.stage_inputs(source, ["data.txt"], tmp_path / "work", "run.sh")
    assert os.listdir(canary.parent) == ["canary.txt"]


def test_staging_a_name_twice_keeps_the_last_copy(tmp_path):
    src = tmp_path / "s"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    (src / "a" / "x.txt").write_text("first\n")
    (src / "b" / "x.txt").write_text("second\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    workfiles.stage_inputs(src, ["a/x.txt", "b/x.txt", "run.sh"], tmp_path / "w", "run.sh")
    assert (tmp_path / "w" / "x.txt").read_text() == "second\n"
    assert os.access(tmp_path / "w" / "run.sh", os.X_OK)


def test_run_bits_follow_the_read_bits():
    assert workfiles.with_run_bits(0o644) == 0o755
    assert workfiles.with_run_bits(0o600) == 0o700
    assert workfiles.with_run_bits(0o200) == 0o300


def test_is_empty_sees_a_planted_link_and_refuses_a_linked_folder(tmp_path, canary):
    work = tmp_path / "w"
    work.mkdir()
    assert workfiles.is_empty(work)
    (work / "x").symlink_to(canary)
    assert not workfiles.is_empty(work)
    (tmp_path / "l").symlink_to(work, target_is_directory=True)
    with pytest.raises(OSError):
        workfiles.is_empty(tmp_path / "l")


def test_a_1100_level_tree_is_removed_without_recursion(tmp_path):
    assert sys.getrecursionlimit() < 1100 * 2
    work = tmp_path / "w"
    work.mkdir()
    _deep(work, 1100)
    (work / "top.txt").write_text("x")
    assert workfiles.empty_folder(work) is True
    assert os.listdir(work) == []
    _deep(work, 1100)
    assert workfiles.remove_tree(work) is True and not work.exists()
    assert workfiles.remove_tree(work) is True, "gone already is fine"


def test_removal_unlinks_links_and_never_what_they_point_to(tmp_path, canary):
    work = tmp_path / "w"
    (work / "sub").mkdir(parents=True)
    (work / "to-file").symlink_to(canary)
    (work / "sub" / "to-folder").symlink_to(canary.parent, target_is_directory=True)
    os.mkfifo(work / "sub" / "fifo")
    os.link(canary, work / "hard")
    assert workfiles.remove_tree(work) and not work.exists()
    assert canary.read_text() == "canary\n" and os.listdir(canary.parent) == ["canary.txt"]
    link = tmp_path / "link-to-outside"
    link.symlink_to(canary.parent, target_is_directory=True)
    assert workfiles.remove_tree(link) and not os.path.lexists(link)
    assert canary.exists(), "removing a link removes the link only"


def test_snapshot_and_collection_skip_links_fifos_hard_links_and_keep_real_files(tmp_path, canary):
    work, dest = tmp_path / "w", tmp_path / "out"
    (work / "a" / "b").mkdir(parents=True)
    (work / "real.txt").write_text("mine\n")
    (work / "a" / "b" / "deep.txt").write_text("deep\n")
    (work / "top-link").symlink_to(canary)
    (work / "a" / "mid-link").symlink_to(canary.parent, target_is_directory=True)
    (work / "a" / "b" / "low-link").symlink_to("/etc", target_is_directory=True)
    os.mkfifo(work / "a" / "fifo")
    (work / "one").write_text("linked\n")
    os.link(work / "one", work / "two")
    snap = workfiles.snapshot(work)
    assert set(snap) == {"real.txt", "a/b/deep.txt", "one", "two"}
    got = workfiles.collect_outputs(work, {}, [], dest, 10 << 20)
    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert found == ["a/b/deep.txt", "real.txt"]
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    assert got.missing == [] and got.over_budget_at == ""
    assert got.notes == ["not collected: hard-linked files (copy them instead of linking): one, two"]


def test_a_wanted_output_that_is_a_link_is_missing_not_followed(tmp_path, canary):
    work, dest = tmp_path / "w", tmp_path / "out"
    work.mkdir()
    (work / "results").symlink_to(canary.parent, target_is_directory=True)
    got = workfiles.collect_outputs(work, {}, ["results"], dest, 10 << 20)
    assert got.missing == ["results"] and not dest.exists()


def test_only_new_or_changed_files_come_back(tmp_path):
    work, dest = tmp_path / "w", tmp_path / "out"
    work.mkdir()
    (work / "input.txt").write_text("in\n")
    before = workfiles.snapshot(work)
    (work / "made.txt").write_text("out\n")
    assert workfiles.collect_outputs(work, before, [], dest).missing == []
    assert os.listdir(dest) == ["made.txt"]


def test_a_name_that_is_not_utf8_is_left_out_with_a_note(tmp_path):
    work, dest = tmp_path / "w", tmp_path / "out"
    work.mkdir()
    with open(os.path.join(os.fsencode(work), b"\xff.txt"), "w") as f:
        f.write("x")
    (work / "ok.txt").write_text("ok\n")
    got = workfiles.collect_outputs(work, {}, [], dest)
    assert os.listdir(dest) == ["ok.txt"]
    assert got.notes == ["not collected: a file name that is not UTF-8: \\xff.txt"]


def test_folders_deeper_than_the_limit_are_left_out_with_a_note(tmp_path):
    work, dest = tmp_path / "w", tmp_path / "out"
    work.mkdir()
    _deep(work, 1100)
    got = workfiles.collect_outputs(work, {}, [], dest)
    shown = ("d/" * (workfiles.MAX_OUTPUT_DEPTH + 1))[: workfiles.NOTE_NAME_CHARS - 3] + "..."
    assert got.notes == [f"not collected: folders more than {workfiles.MAX_OUTPUT_DEPTH} levels deep: {shown}"]
    assert not dest.exists(), "nothing to collect above the limit"
    assert workfiles.remove_tree(work)


def test_paths_too_long_for_path_max_are_left_out_with_a_note(tmp_path):
    work, dest = tmp_path / "w", tmp_path / "out"
    long = work / Path(*["x" * 200] * 11)
    long.mkdir(parents=True)
    (long.parent / "fits.txt").write_text("ok\n")
    (long / "too-far.txt").write_text("no\n")
    got = workfiles.collect_outputs(work, {}, [], dest)
    assert [p.name for p in dest.rglob("*") if p.is_file()] == ["fits.txt"]
    assert len(got.notes) == 1 and got.notes[0].startswith("not collected: paths longer than 2048 bytes: xxx")


def test_a_sparse_file_is_copied_sparsely(tmp_path):
    src, dst = tmp_path / "sparse", tmp_path / "copy"
    with open(src, "wb") as f:
        f.truncate(3 << 30)
        f.seek(1 << 30)
        f.write(b"middle")
    fd_in = os.open(src, os.O_RDONLY)
    fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        read = workfiles.copy_data(fd_in, fd_out)
    finally:
        os.close(fd_in)
        os.close(fd_out)
    assert dst.stat().st_size == 3 << 30
    assert dst.stat().st_blocks * 512 <= 1 << 20, "a few blocks, not 3 GB"
    assert read <= 1 << 20, "only the data was read"
    with open(dst, "rb") as f:
        f.seek(1 << 30)
        assert f.read(6) == b"middle"


def test_a_sparse_3gb_output_costs_a_block_of_the_budget(tmp_path):
    work, dest = tmp_path / "w", tmp_path / "out"
    work.mkdir()
    with open(work / "big", "wb") as f:
        f.truncate(3 << 30)
    got = workfiles.collect_outputs(work, {}, [], dest, 5 << 20)
    assert got.over_budget_at == "" and got.counted_bytes == workfiles.BLOCK_BYTES
    assert (dest / "big").stat().st_size == 3 << 30 and (dest / "big").stat().st_blocks == 0


def test_outputs_past_the_budget_stop_collection_and_storage_keeps_no_more(tmp_path):
    work, dest = tmp_path / "w", tmp_path / "out"
    work.mkdir()
    (work / "a-small.txt").write_bytes(os.urandom(1 << 20))
    (work / "b-big.bin").write_bytes(os.urandom(10 << 20))
    (work / "c-after.txt").write_text("after\n")
    got = workfiles.collect_outputs(work, {}, [], dest, 5 << 20)
    assert got.over_budget_at == "b-big.bin"
    assert os.listdir(dest) == ["a-small.txt"], "the file that passed the budget is removed again"
    held = sum(p.stat().st_blocks * 512 for p in dest.rglob("*"))
    assert held <= 5 << 20


def test_cost_counts_whole_blocks_and_at_least_one():
    assert workfiles.cost_bytes(0) == 4096
    assert workfiles.cost_bytes(1) == 4096
    assert workfiles.cost_bytes(4097) == 8192


def test_empty_files_are_not_free(tmp_path):
    work, dest = tmp_path / "w", tmp_path / "out"
    work.mkdir()
    for i in range(300):
        (work / f"{i:03}").touch()
    got = workfiles.collect_outputs(work, {}, [], dest, 100 * 4096)
    assert got.over_budget_at == "100"
    assert len(os.listdir(dest)) == 100


def test_a_fifo_swapped_in_for_a_file_does_not_hang_collection(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "f").write_text("x")
    root = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        files, _ = workfiles._scan(root)
        os.unlink(work / "f")
        os.mkfifo(work / "f")
        assert workfiles._open_source(root, ("f",), files["f"]) is None
    finally:
        os.close(root)


def test_remapped_outputs_are_stored_under_their_new_paths_and_the_file_they_replace_is_left_out(tmp_path):
    work, dest = tmp_path / "w", tmp_path / "out"
    (work / "sub").mkdir(parents=True)
    (work / "a.html").write_text("a\n")
    (work / "sub" / "b.txt").write_text("b\n")
    (work / "kept.txt").write_text("kept\n")
    (work / "taken.txt").write_text("the job's own\n")
    remaps = {"a.html": "results/a.html", "sub/b.txt": "taken.txt"}
    got = workfiles.collect_outputs(work, {}, [], dest, 10 << 20, remaps)
    found = {str(p.relative_to(dest)): p.read_text() for p in dest.rglob("*") if p.is_file()}
    assert found == {"results/a.html": "a\n", "taken.txt": "b\n", "kept.txt": "kept\n"}
    assert got.notes == ["not collected: files whose name transfer_output_remaps gives another output: taken.txt"]
