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
