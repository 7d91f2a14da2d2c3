"""The fence's configuration: staff paths, container roots, and where hidden folders get covered."""

import pytest

from dctoolkit.nodes.worker import sandbox
from dctoolkit.nodes.worker.sandbox import ExtraPath, Fence, SandboxConfigError, parse_sandbox_paths


def test_sandbox_paths_are_read_only_unless_marked_rw():
    assert parse_sandbox_paths(" /data , /scratch:rw,/tmp/x/:ro,") == (
        ExtraPath("/data"),
        ExtraPath("/scratch", writable=True),
        ExtraPath("/tmp/x"),
    )


@pytest.mark.parametrize("entry", ["data", "/data:rx"])
def test_a_bad_sandbox_path_names_the_entry_and_the_accepted_forms(entry):
    with pytest.raises(SandboxConfigError) as err:
        parse_sandbox_paths(f"/ok,{entry}")
    assert str(err.value) == (
        f"DCT_SANDBOX_PATHS entry '{entry}': write an absolute PATH (read-only) or PATH:rw (writable)"
    )


def test_a_container_root_needs_mount_points_for_proc_dev_and_tmp(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "dev").mkdir()
    assert sandbox.container_problem(str(tmp_path)) == (
        f"{tmp_path} has no proc/, tmp/ folder (make them: mkdir {tmp_path}/{{proc,dev,tmp}})"
    )
    (tmp_path / "proc").mkdir()
    (tmp_path / "tmp").mkdir()
    assert sandbox.container_problem(str(tmp_path)) is None
    assert sandbox.container_problem(str(tmp_path / "nope")) == f"{tmp_path / 'nope'} is not a folder"


def test_a_hidden_folder_is_covered_only_where_a_bound_folder_shows_it(tmp_path):
    shared = tmp_path / "shared"
    (shared / "storage").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    fence = Fence(
        workdir="/w",
        extra_paths=(ExtraPath(str(shared)),),
        hidden=(str(shared / "storage"), str(tmp_path / "elsewhere")),
    )
    assert sandbox.covers(fence) == [str(shared / "storage")]
    assert sandbox.covers(Fence(workdir="/w", hidden=fence.hidden)) == []
