"""The Python client's pure parts: polling pauses, reading a submission, the files it names, the Executor's
submission and outcomes; and the job-side runner run for real by a Python that has no cloudpickle."""

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from dctoolkit.client import api, executor, jobside, remote
from dctoolkit.client.api import Client, ClientError, JobFailedError, SubmissionRefusedError, poll_delays


def test_poll_delays_grow_to_their_cap():
    delays = poll_delays(first=0.2, growth=2, longest=1.0)
    assert [next(delays) for _ in range(6)] == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_a_path_is_read_and_a_text_is_taken_as_it_is(tmp_path, monkeypatch):
    (tmp_path / "job.txt").write_text("executable = run.sh\n")
    assert api.read_submission(tmp_path / "job.txt") == ("executable = run.sh\n", str(tmp_path / "job.txt"), tmp_path)
    monkeypatch.chdir(tmp_path)
    assert api.read_submission("job.txt") == ("executable = run.sh\n", "job.txt", tmp_path)
    assert api.read_submission("executable = run.sh\nqueue\n") == (
        "executable = run.sh\nqueue\n",
        "submission",
        tmp_path,
    )


def test_a_missing_submission_path_is_a_clear_error(tmp_path):
    with pytest.raises(ClientError, match="cannot read the submission file"):
        api.read_submission(tmp_path / "nope.txt")


def test_named_files_are_found_beside_the_submission(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "in.txt").write_text("x\n")
    files = api.named_files("executable = run.sh\ndata = in.txt\nqueue\n", "job.txt", tmp_path)
    assert files == {"run.sh": tmp_path / "run.sh", "in.txt": tmp_path / "in.txt"}


def test_a_folder_input_goes_through_a_server_as_its_files_with_their_paths(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a\n")
    (tmp_path / "elsewhere.txt").write_text("b\n")
    text = "executable = run.sh\ntransfer_input_files = data/, ./elsewhere.txt\n"
    files = api.named_files(text, "job.txt", tmp_path)
    assert files == {"run.sh": tmp_path / "run.sh", "data/a.txt": tmp_path / "data/a.txt",
                     "elsewhere.txt": tmp_path / "elsewhere.txt"}  # fmt: skip
    # An empty folder: no file brings it, so the server is told of it by its path (the API's `dirs`).
    (tmp_path / "empty").mkdir()
    text = "executable = run.sh\ntransfer_input_files = data/, ./empty/, ../away/\n"
    (tmp_path.parent / "away").mkdir(exist_ok=True)
    assert api.named_uploads(text, "job.txt", tmp_path) == (
        {"run.sh": tmp_path / "run.sh", "data/a.txt": tmp_path / "data/a.txt"},
        ["empty"],  # ../away/ is not sent by path (nor would its files be): the server refuses it
    )
    # The folder itself (no '/'): HTCondor would copy it whole; refused with the parser's reason.
    with pytest.raises(SubmissionRefusedError, match=r"job\.txt:2: 'data' is a folder; HTCondor would copy it"):
        api.named_files("executable = run.sh\ntransfer_input_files = data\n", "job.txt", tmp_path)


@pytest.mark.parametrize(
    "source, key",
    [
        ("data/a.txt", "data/a.txt"),
        ("./data/a.txt", "data/a.txt"),
        ("a.txt", "a.txt"),
        ("../shared/a.txt", "a.txt"),
        ("/abs/data/a.txt", "a.txt"),
        ("~/data/a.txt", "a.txt"),
        ("data/../a.txt", "a.txt"),
    ],
)
def test_a_file_is_sent_by_its_path_only_when_that_path_is_plain_and_inside(source, key):
    assert remote.upload_key(source) == key


def test_the_parts_carry_paths_only_when_a_folders_files_are_sent(tmp_path):
    by_name = remote.submission_parts("x", "job.txt", {"run.sh": tmp_path / "run.sh"})
    assert [part[0] for part in by_name] == ["submission", "files"]
    parts = remote.submission_parts("x", "job.txt", {"run.sh": tmp_path / "run.sh", "data/a.txt": tmp_path / "a"})
    assert [(field, name) for field, name, _ in parts] == [
        ("submission", "job.txt"), ("files", "run.sh"), ("files", "a.txt"), ("paths", None), ("paths", None)
    ]  # fmt: skip
    assert [content for field, _, content in parts if field == "paths"] == [b"run.sh", b"data/a.txt"]


def test_a_bad_submission_is_refused_with_the_parsers_text(tmp_path):
    with pytest.raises(SubmissionRefusedError) as caught:
        api.named_files("executable = run.sh\nexecutabel = x\n", "job.txt", tmp_path)
    assert str(caught.value) == "job.txt:2: unknown key 'executabel' — did you mean 'executable'?"
    with pytest.raises(SubmissionRefusedError, match=r"job.txt:1: file '.*run.sh' not found"):
        api.named_files("executable = run.sh\n", "job.txt", tmp_path)


def test_a_token_without_a_server_is_refused(monkeypatch):
    monkeypatch.delenv("DCT_SERVER", raising=False)
    with pytest.raises(ClientError, match="no server"):
        Client(token="abc")
    with pytest.raises(ClientError, match="DCT_TOKEN is not"):
        Client(server="http://127.0.0.1:1")


def test_dct_server_and_dct_token_make_the_client_remote(monkeypatch):
    monkeypatch.setenv("DCT_SERVER", "http://cluster.example:8000/")
    monkeypatch.setenv("DCT_TOKEN", "abc")
    client = Client()  # nothing is asked of the server yet
    assert client.remote and isinstance(client.backend, api.RemoteBackend)
    assert client.backend.http.server == "http://cluster.example:8000"
    assert Client(server="http://other:1", token="t").backend.http.server == "http://other:1"


def test_the_executors_submission_asks_what_it_was_given():
    text = executor.submission_text("executor.f", cpus=2, memory="3GB", gpus=1, time_limit="10m")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert text.splitlines() == [
        "executable = dct_call.py",
        f"arguments = {version}",
        "data = call.pkl, cloudpickle.zip",
        "name = executor.f",
        "request_cpus = 2",
        "request_memory = 3GB",
        "request_gpus = 1",
        "max_runtime = 10m",
        "queue",
    ]


def test_an_outcome_gives_the_value_or_raises_with_the_remote_traceback():
    job = {"id": 7, "state": "succeeded", "exit_code": 0, "reason": ""}
    assert executor.outcome_of(cloudpickle.dumps(("value", [1, 2])), job) == [1, 2]
    data = cloudpickle.dumps(("error", KeyError("k"), "Traceback...\n  File \"x.py\"\nKeyError: 'k'\n"))
    with pytest.raises(KeyError) as caught:
        executor.outcome_of(data, {**job, "state": "failed", "exit_code": 1})
    cause = caught.value.__cause__
    assert isinstance(cause, executor.RemoteTraceback) and 'File "x.py"' in cause.text
    assert any("raised in dctoolkit job 7" in note for note in caught.value.__notes__)


def test_a_job_without_a_result_is_a_job_failed_error():
    job = {"id": 9, "state": "failed", "exit_code": 137, "reason": "killed: over its memory"}
    with pytest.raises(JobFailedError) as caught:
        executor.outcome_of(None, job)
    assert str(caught.value) == (
        "job 9 ended failed (exit status 137): killed: over its memory without a result; "
        "'./dct logs 9 --stderr' shows what it said"
    )
    assert caught.value.job is job


def test_map_chunks_keep_order():
    chunks = list(executor.chunked(zip([1, 2, 3, 4, 5], "abcde", strict=True), 2))
    assert chunks == [[(1, "a"), (2, "b")], [(3, "c"), (4, "d")], [(5, "e")]]


def stage(folder: Path, call: tuple) -> None:
    shutil.copyfile(jobside.__file__, folder / executor.RUNNER_NAME)
    (folder / jobside.CALL_FILE).write_bytes(cloudpickle.dumps(call))
    (folder / jobside.CLOUDPICKLE_ZIP).write_bytes(executor.cloudpickle_zip())


def host_python_without_cloudpickle() -> str:
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("no /usr/bin/python3 on this machine")
    found = subprocess.run([python, "-c", "import cloudpickle"], capture_output=True, check=False)
    if found.returncode == 0:
        pytest.skip("/usr/bin/python3 has cloudpickle: the staged copy would not be what is tested")
    version = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    if version != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip(f"/usr/bin/python3 is {version}, not this Python: bytecode would not match")
    return python


def test_the_runner_computes_with_the_staged_cloudpickle_alone(tmp_path):
    python = host_python_without_cloudpickle()
    offset = 100
    stage(tmp_path, ("call", lambda x, y=0: x * x + y + offset, (7,), {"y": 1}))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    done = subprocess.run([python, "-I", executor.RUNNER_NAME, version], cwd=tmp_path, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert pickle.loads((tmp_path / jobside.RESULT_FILE).read_bytes()) == ("value", 150)


def test_the_runner_runs_a_chunk_of_calls(tmp_path):
    stage(tmp_path, ("chunk", lambda a, b: a + b, [(1, 2), (3, 4), (5, 6)]))
    done = subprocess.run([sys.executable, executor.RUNNER_NAME], cwd=tmp_path, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert cloudpickle.loads((tmp_path / jobside.RESULT_FILE).read_bytes()) == ("value", [3, 7, 11])


def test_a_function_the_job_cannot_import_comes_back_as_its_error_with_a_hint(tmp_path):
    # A pickle naming `f` in a module the job has not got (as a function of an importable module is pickled).
    (tmp_path / jobside.CALL_FILE).write_bytes(b"cnowhere_module\nf\n.")
    shutil.copyfile(jobside.__file__, tmp_path / executor.RUNNER_NAME)
    done = subprocess.run([sys.executable, executor.RUNNER_NAME], cwd=tmp_path, capture_output=True, check=False)
    assert done.returncode == 1
    kind, exc, text = cloudpickle.loads((tmp_path / jobside.RESULT_FILE).read_bytes())
    assert kind == "error" and isinstance(exc, ModuleNotFoundError)
    assert "register_pickle_by_value" in text


def test_the_runner_sends_back_the_exception_and_exits_1(tmp_path):
    python = host_python_without_cloudpickle()

    def boom(word):
        raise ValueError(f"bad {word}")

    stage(tmp_path, ("call", boom, ("input",), {}))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    argv = [python, "-I", executor.RUNNER_NAME, version]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "ValueError: bad input" in done.stderr
    kind, exc, text = cloudpickle.loads((tmp_path / jobside.RESULT_FILE).read_bytes())
    assert kind == "error" and isinstance(exc, ValueError) and str(exc) == "bad input"
    assert "in boom" in text and text.rstrip().endswith("ValueError: bad input")


def test_the_runner_refuses_a_python_that_cannot_read_the_bytecode(tmp_path):
    stage(tmp_path, ("call", len, ("ab",), {}))
    argv = [sys.executable, executor.RUNNER_NAME, "2.7"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "pickled by Python 2.7 but this node runs Python" in done.stderr
    assert not (tmp_path / jobside.RESULT_FILE).exists()
