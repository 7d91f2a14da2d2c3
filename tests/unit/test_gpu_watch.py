"""The node's side of GPU utilisation (nodes/worker/gpuwatch.py): where the figures come from and each job's
window.  NVML is stood in for by a fake module here: no GPU on this machine (the real path is untested)."""

import sys
import types

import pytest

from dctoolkit.nodes.worker import gpuwatch


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(gpuwatch, "_windows", {})
    monkeypatch.setattr(gpuwatch, "_warned", set())
    monkeypatch.setattr(gpuwatch, "_nvml_ready", None)


def test_the_source_file_maps_gpu_index_to_percent_and_a_bad_one_gives_nothing(tmp_path, caplog):
    source = tmp_path / "u.json"
    assert gpuwatch.read_source(str(source)) == {}, "not written yet"
    source.write_text('{"0": 0, "1": 80.5}')
    assert gpuwatch.read_source(str(source)) == {0: 0.0, 1: 80.5}
    source.write_text("0=0")
    assert gpuwatch.read_source(str(source)) == {}
    assert (
        f"DCT_GPU_UTILIZATION_SOURCE={source}: " in caplog.text and 'write JSON like {"0": 0, "1": 80}' in caplog.text
    )


def test_declared_gpus_without_a_source_give_no_figures(settings, tmp_path):
    settings.DCT_GPU_UTILIZATION_SOURCE, settings.DCT_GPUS = "", "A100:40GB"
    assert gpuwatch.read_percents() == {}
    (tmp_path / "u.json").write_text('{"0": 3}')
    settings.DCT_GPU_UTILIZATION_SOURCE = str(tmp_path / "u.json")
    assert gpuwatch.read_percents() == {0: 3.0}


def test_a_job_window_is_fresh_once_per_attempt_and_forgotten_when_the_job_is_gone():
    first = gpuwatch.sample([(7, 1, (0, 1))], {0: 0.0, 1: 100.0}, now=0.0)
    assert (first[7].percent, first[7].recent, first[7].fresh) == (50.0, 50.0, True)
    later = gpuwatch.sample([(7, 1, (0, 1))], {0: 0.0, 1: 0.0}, now=5.0)
    assert (later[7].percent, later[7].recent, later[7].fresh) == (0.0, 25.0, False)
    assert gpuwatch.sample([(7, 1, (0, 2))], {0: 0.0}, now=10.0) == {}, "GPU 2 was not read: no sample"
    gone = gpuwatch.sample([(7, 2, (0,))], {0: 10.0}, now=15.0)
    assert gone[7].fresh and gpuwatch._windows.keys() == {(7, 2)}, "a new attempt starts a new window"
    assert gpuwatch.sample([(7, 2, (0,))], {0: 30.0}, now=15.0 + 601)[7].recent == 30.0, "older than 10 min dropped"


class FakeNvml(types.ModuleType):
    """The few pynvml calls gpuwatch makes, on two GPUs at 0% and 80%."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        super().__init__("pynvml")
        self.inits, self.fail_init = 0, fail_init

    def nvmlInit(self):
        self.inits += 1
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUtilizationRates(self, handle):
        return types.SimpleNamespace(gpu=(0, 80)[handle], memory=0)


def test_nvml_is_started_once_and_read_per_gpu(monkeypatch, settings):
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    settings.DCT_GPU_UTILIZATION_SOURCE, settings.DCT_GPUS = "", ""
    assert gpuwatch.read_percents() == {0: 0.0, 1: 80.0}
    assert gpuwatch.read_percents() == {0: 0.0, 1: 80.0}
    assert fake.inits == 1


def test_nvml_that_does_not_start_gives_nothing_and_says_so_once(monkeypatch, caplog):
    fake = FakeNvml(fail_init=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert gpuwatch.read_nvml() == {} and gpuwatch.read_nvml() == {}
    assert fake.inits == 1 and caplog.text.count("NVML did not start (Driver Not Loaded)") == 1


# --- a source file a job may reach: read safely, the heartbeat never stalls on it --------------------


def read_in_thread(path) -> dict:
    """read_source(path) in a thread; fails (instead of hanging the suite) if it has not returned in 30 s."""
    import threading

    answer: dict = {}
    reader = threading.Thread(target=lambda: answer.update(got=gpuwatch.read_source(str(path))), daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "read_source blocked: the heartbeat would stall"
    return answer["got"]


def test_a_fifo_in_place_of_the_source_does_not_block_the_heartbeat(tmp_path, caplog):
    import os

    source = tmp_path / "u.json"
    os.mkfifo(source)
    try:
        assert read_in_thread(source) == {}
        assert f"DCT_GPU_UTILIZATION_SOURCE={source}: not a regular file" in caplog.text
    finally:
        # A reader left waiting in open() (the code before this fix) is let go: a writer comes and goes.
        try:
            os.close(os.open(source, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # ENXIO: no reader waiting


def test_a_link_in_place_of_the_source_is_not_followed(tmp_path, caplog):
    real = tmp_path / "someone_elses.json"
    real.write_text('{"0": 55}')
    (tmp_path / "u.json").symlink_to(real)
    assert read_in_thread(tmp_path / "u.json") == {}
    assert "is a link; write the file itself there" in caplog.text


def test_a_source_larger_than_the_cap_is_not_read(tmp_path, caplog):
    source = tmp_path / "u.json"
    source.write_text('{"0": 5}' + " " * gpuwatch.MAX_SOURCE_BYTES)
    assert read_in_thread(source) == {}
    assert f"larger than {gpuwatch.MAX_SOURCE_BYTES // 1024} KiB" in caplog.text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 5000, "not JSON"),  # deep enough to exhaust the JSON parser's recursion
        ('["0", 80]', "not a JSON object"),
        ('{"0": NaN}', "a value is not a percent from 0 to 100"),
        ('{"0": -5}', "a value is not a percent from 0 to 100"),
        ('{"0": 1e9}', "a value is not a percent from 0 to 100"),
        ('{"0": true}', "a value is not a percent from 0 to 100"),
        ('{"gpu0": 5}', "a key is not a GPU index (a whole number)"),
    ],
)
def test_malformed_content_gives_no_figures_and_one_clear_line(tmp_path, caplog, text, problem):
    source = tmp_path / "u.json"
    source.write_text(text)
    assert read_in_thread(source) == {}
    assert f"DCT_GPU_UTILIZATION_SOURCE={source}: {problem}" in caplog.text


def test_a_job_rewriting_the_source_in_many_bad_ways_gets_one_line_per_kind_of_problem(tmp_path, caplog):
    source = tmp_path / "u.json"
    for i in range(20):
        source.write_text('{"0": 1,' + " " * i + "}")  # a JSON error at a different position each time
        assert gpuwatch.read_source(str(source)) == {}
    assert caplog.text.count("DCT_GPU_UTILIZATION_SOURCE=") == 1


def test_a_source_jobs_can_write_is_named_at_node_start(tmp_path):
    source = str(tmp_path / "shared" / "u.json")
    assert gpuwatch.writable_by_jobs(source, [(str(tmp_path / "shared"), False)], sandboxed=True) == ""
    assert gpuwatch.writable_by_jobs(source, [(str(tmp_path / "shared"), True)], sandboxed=True) == (
        f"it lies in {tmp_path / 'shared'}, which DCT_SANDBOX_PATHS gives jobs read-write"
    )
    assert gpuwatch.writable_by_jobs(source, [(str(tmp_path / "sh"), True)], sandboxed=True) == "", "not a prefix"
    assert gpuwatch.writable_by_jobs(source, [], sandboxed=False).startswith("the sandbox is off")
    assert gpuwatch.writable_by_jobs("", [], sandboxed=False) == ""
