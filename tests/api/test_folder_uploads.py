"""A folder through the API: files sent with their paths (`paths`), so `dir/` inputs find them as locally."""

import pytest

from dctoolkit.jobs.models import Job
from tests.api.conftest import HELLO, upload

pytestmark = pytest.mark.django_db

TEXT = "executable = hello.py\ntransfer_input_files = data/\nqueue\n"


def send(client, text: str, files: dict[str, bytes | str], paths: list[str] | None, dirs: list[str] | None = None):
    data: dict = {
        "submission": upload("job.sub", text),
        "files": [upload(p.rsplit("/", 1)[-1], c) for p, c in files.items()],
    }
    if paths is not None:
        data["paths"] = paths
    if dirs is not None:
        data["dirs"] = dirs
    return client.post("/api/jobs/", data, format="multipart")


def test_a_folder_input_finds_the_files_sent_with_its_path(alice):
    files = {"hello.py": HELLO, "data/a.csv": "1,2\n", "data/b.csv": "3,4\n"}
    response = send(alice, TEXT, files, list(files))
    assert response.status_code == 201, response.content
    (job,) = Job.objects.all()
    assert sorted(job.inputs) == ["a.csv", "b.csv"], "a folder's files land in the job's folder by name"
    folder = job.submission.folder()
    assert (folder / "a.csv").read_text() == "1,2\n" and (folder / "b.csv").read_text() == "3,4\n"


def test_without_paths_a_folder_input_is_refused_as_before(alice):
    response = send(alice, TEXT, {"hello.py": HELLO, "data/a.csv": "1\n"}, None)
    assert response.status_code == 400
    assert response.json()["error"].startswith("job.sub:2: ")
    assert not Job.objects.exists()


def test_a_sub_folder_inside_the_folder_input_is_refused_naming_it(alice):
    files = {"hello.py": HELLO, "data/a.csv": "1\n", "data/deep/b.csv": "2\n"}
    response = send(alice, TEXT, files, list(files))
    assert response.status_code == 400
    assert "'data/' holds the folder 'deep'" in response.json()["error"]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "bad, says",
    [
        ("../etc/passwd", "a path may not hold an empty part, '.' or '..'"),
        ("/etc/passwd", "send a path relative to the submission file's folder"),
        ("data//a.csv", "a path may not hold an empty part"),
        ("data\\a.csv", "with '/' between folders"),
    ],
)
def test_a_path_that_is_not_plain_and_relative_is_400_and_queues_nothing(alice, bad, says):
    response = send(alice, TEXT, {"hello.py": HELLO, "data/a.csv": "1\n"}, ["hello.py", bad])
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert not Job.objects.exists()


def test_paths_must_come_one_per_file(alice):
    response = send(alice, TEXT, {"hello.py": HELLO, "data/a.csv": "1\n"}, ["hello.py"])
    assert response.status_code == 400
    assert response.json()["error"].startswith("1 'paths' fields for 2 files; send one 'paths' field per 'files'")


def test_two_files_sent_as_one_path_is_400(alice):
    response = send(
        alice, TEXT, {"hello.py": HELLO, "data/a.csv": "1\n", "x": "2\n"}, ["hello.py", "data/a.csv", "data/a.csv"]
    )
    assert response.status_code == 400
    assert response.json()["error"] == "two files sent as 'data/a.csv'; send each file once"


def test_a_file_named_by_a_sub_path_is_matched_by_that_path_before_its_name(alice):
    # Two different files called a.csv in two folders: each job input finds its own.
    text = "executable = hello.py\ntransfer_input_files = one/a.csv\nqueue\n"
    files = {"hello.py": HELLO, "one/a.csv": "from one\n", "two/a.csv": "from two\n"}
    response = send(alice, text, files, list(files))
    assert response.status_code == 201, response.content
    (job,) = Job.objects.all()
    assert (job.submission.folder() / "a.csv").read_text() == "from one\n"


def test_more_paths_fields_than_a_request_may_hold_is_413_in_the_error_shape(alice, settings):
    response = send(alice, TEXT, {"hello.py": HELLO}, ["hello.py"] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    assert response.status_code == 413
    assert response.json()["error"].startswith(f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields in one")
    assert not Job.objects.exists()


@pytest.mark.parametrize("paths", [None, ["hello.py"]])
def test_an_empty_folder_sent_in_dirs_is_a_folder_input_that_stages_nothing(alice, paths):
    response = send(alice, TEXT, {"hello.py": HELLO}, paths, ["data"])
    assert response.status_code == 201, response.content
    (job,) = Job.objects.all()
    assert (job.inputs, job.submission.files) == ([], {"hello.py": "hello.py", "data/": ""})


def test_an_empty_folder_not_sent_is_refused_as_before(alice):
    response = send(alice, TEXT, {"hello.py": HELLO}, None)
    assert response.status_code == 400
    assert response.json()["error"] == "job.sub:2: file 'data' not found; check the name and that it exists"


def test_a_folder_in_dirs_with_files_sent_in_it_lists_them(alice):
    files = {"hello.py": HELLO, "data/a.csv": "1\n"}
    response = send(alice, TEXT, files, list(files), ["data/"])
    assert response.status_code == 201, response.content
    assert Job.objects.get().inputs == ["a.csv"]


@pytest.mark.parametrize(
    "bad, says",
    [
        ("../data", "a path may not hold an empty part, '.' or '..'"),
        ("/data", "send a path relative to the submission file's folder"),
        ("hello.py", "'hello.py' is sent as a file and as a folder; send it once"),
    ],
)
def test_a_dirs_path_that_is_not_plain_and_relative_or_is_a_file_is_400_and_queues_nothing(alice, bad, says):
    response = send(alice, TEXT, {"hello.py": HELLO}, ["hello.py"], ["data", bad])
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert not Job.objects.exists()
