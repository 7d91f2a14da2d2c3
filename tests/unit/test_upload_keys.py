"""Uploads keyed by path or name (dctoolkit/jobs/web/uploads.py) and what UploadedFiles finds by them."""

import io

import pytest

from dctoolkit.jobs.intake.parse import InputFile
from dctoolkit.jobs.intake.queue import UploadedFiles
from dctoolkit.jobs.web.uploads import UploadError, keyed_uploads, path_problem


def test_without_paths_files_are_keyed_by_their_names():
    assert keyed_uploads(["A", "B"], ["x/a.txt", "b.txt"], []) == {"a.txt": "A", "b.txt": "B"}


def test_with_paths_files_are_keyed_by_them_and_every_problem_is_said_at_once():
    assert keyed_uploads(["A", "B"], ["a", "b"], ["data/a.txt", "b.txt"]) == {"data/a.txt": "A", "b.txt": "B"}
    with pytest.raises(UploadError) as caught:
        keyed_uploads(["A", "B", "C"], ["a", "b", "c"], ["../a", "/b", "../a"])
    assert str(caught.value).split("; ") == [
        "'../a': a path may not hold an empty part, '.' or '..'",
        "send it as data/a.txt",
        "'/b': send a path relative to the submission file's folder, with '/' between folders",
        "two files sent as '../a'",
        "send each file once",
    ]


@pytest.mark.parametrize("path", ["a.txt", "data/a.txt", "d/e/f.txt", "é/ü.txt"])
def test_plain_relative_paths_are_fine(path):
    assert path_problem(path) is None


@pytest.mark.parametrize("path", ["", "/a", "a/../b", "./a", "a//b", "a\\b", "a\x00b", "/".join("d" * 17), "x" * 256])
def test_anything_else_is_a_problem(path):
    assert path_problem(path)


def ref(source: str) -> InputFile:
    return InputFile(source, source.rsplit("/", 1)[-1], 1)


def test_uploaded_files_find_a_folder_by_its_paths_and_a_file_by_path_before_name():
    files = UploadedFiles({"run.sh": io.BytesIO(b"#!"), "data/a": io.BytesIO(b"1"), "data/deep/b": io.BytesIO(b"2")})
    assert files.listdir("data") == files.listdir("./data/") == [("a", False), ("deep", True)]
    assert files.listdir("run.sh") is None and files.listdir("nothing") is None
    assert files.names() == [("data", True), ("run.sh", False)]
    assert files.exists(ref("data/a")) and files.describe(ref("data/a")) == "data/a"
    assert files.exists(ref("../elsewhere/run.sh")), "a path not sent is matched by its file name, as before"
    assert not files.exists(ref("other/a")), "nor is a folder's file found by its bare name"
    assert files.read_text("data/a") == "1"
