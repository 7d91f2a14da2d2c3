"""Labels, node choice and GPU kinds: the planner's matching, the parser's keys, the check at submit and
the reason a job waits.  Pure functions, no services."""

import pytest

from dctoolkit.jobs.intake.parse import NodeOffer, SubmissionError, check_nodes, parse_submission
from dctoolkit.jobs.scheduling.matching import ANY, GpuKind, LabelError, Wants, split_names, wants_from
from dctoolkit.jobs.scheduling.policy import FreeNode, QueuedJob, pick_assignments
from dctoolkit.jobs.scheduling.reasons import NodeView, Request, WaitFacts, explain_wait
from dctoolkit.nodes.worker.gpus import Gpu, declared_gpus

A100 = GpuKind("NVIDIA A100-SXM4-40GB", 40960, 8.0)
T4 = GpuKind("Tesla T4", 16384, 7.5)


def node(name, cpus=4, labels=(), gpus=()):
    kinds = dict(enumerate(gpus))
    return FreeNode(name, cpus, 8192, cpus, 8192, list(kinds), len(kinds), (), frozenset(labels), kinds)


def placed(jobs, nodes):
    picks = pick_assignments({1: jobs}, nodes, {})
    return {a.job_id: (a.node, a.gpu_indices) for a in picks.assignments}


# --- the planner ----------------------------------------------------------------------------------


def test_a_job_goes_only_to_a_node_with_every_label_it_asks():
    job = QueuedJob(1, 1, wants=Wants(labels=frozenset({"ib", "avx512"})))
    nodes = [node("node-1", labels={"ib"}), node("node-2", labels={"ib", "avx512", "gpu80"})]
    assert placed([job], nodes) == {1: ("node-2", ())}
    assert placed([job], nodes[:1]) == {}


def test_node_choice_takes_any_of_the_named_nodes_and_never_an_avoided_one():
    anyof = QueuedJob(1, 1, wants=Wants(nodes=frozenset({"node-2", "node-3"})))
    avoid = QueuedJob(2, 1, wants=Wants(avoid=frozenset({"node-1"})))
    nodes = [node("node-1", cpus=1), node("node-3", cpus=8)]
    assert placed([anyof, avoid], nodes) == {1: ("node-3", ()), 2: ("node-3", ())}
    assert placed([avoid], nodes[:1]) == {}


def test_a_gpu_type_job_gets_the_index_of_that_kind_and_others_keep_the_rest():
    t4 = QueuedJob(1, 1, gpus=1, wants=Wants(gpu_type="t4"))
    anygpu = QueuedJob(2, 1, gpus=1)
    assert placed([t4, anygpu], [node("node-1", gpus=(A100, T4))]) == {1: ("node-1", (1,)), 2: ("node-1", (0,))}


def test_gpu_memory_and_capability_are_minimums_per_gpu():
    big = QueuedJob(1, 1, gpus=2, wants=Wants(gpu_memory_mb=20000))
    nodes = [node("node-1", gpus=(A100, T4, A100)), node("node-2", gpus=(T4, T4))]
    assert placed([big], nodes) == {1: ("node-1", (0, 2))}
    ampere = QueuedJob(2, 1, gpus=1, wants=Wants(gpu_capability=8.0))
    assert placed([ampere], nodes[1:]) == {}


def test_a_gpu_kind_job_reserves_only_a_node_that_has_that_kind():
    # The A100 is taken: the A100 job waits (reserving node-1), a plain job still runs on node-2.
    a100 = QueuedJob(1, 1, gpus=1, wants=Wants(gpu_type="A100"))
    busy = node("node-1", gpus=(A100, T4))
    busy.free_gpus = [1]
    assert placed([a100], [busy, node("node-2")]) == {}
    assert busy.fits_ever(a100) and not node("node-2", gpus=(T4,)).fits_ever(a100)


def test_stored_placement_text_and_dict_read_the_same():
    wants = Wants(labels=frozenset({"ib"}), gpu_type="T4", gpu_memory_mb=16384)
    assert wants_from(wants.as_dict()) == wants
    assert wants_from('{"labels": ["ib"], "gpu_type": "T4", "gpu_memory_mb": 16384}') == wants
    assert wants_from("{}") is ANY and wants_from({}) is ANY


# --- the parser -------------------------------------------------------------------------------------


def parse(text):
    return parse_submission(text, "job.txt")


def error_of(text, nodes=None):
    with pytest.raises(SubmissionError) as info:
        submission = parse(text)
        check_nodes(submission, nodes or [])
    return str(info.value)


def test_machine_choice_keys_become_the_jobs_wants():
    job = parse("executable = f.py\nlabels = ib, avx512\nnode = n1, n2\navoid = n3\nqueue\n").jobs[0]
    assert (job.labels, job.nodes, job.avoid, job.node) == (("ib", "avx512"), ("n1", "n2"), ("n3",), "")
    assert job.wants == Wants(frozenset({"ib", "avx512"}), frozenset({"n1", "n2"}), frozenset({"n3"}))
    assert parse("executable = f.py\nnode = n1\n").jobs[0].node == "n1"
    assert (parse("executable = f.py\nclient = 2, 2\n").jobs[0].node, job.nodes) == ("node-2", ("n1", "n2"))
    assert parse("executable = f.py\n").jobs[0].wants is ANY


def test_gpu_kind_keys_and_htcondors_spellings():
    job = parse("executable = f.py\ngpu_type = A100\ngpu_memory = 40GB\nrequest_gpus = 2\n").jobs[0]
    assert (job.gpu_type, job.gpu_memory_mb, job.request_gpus) == ("A100", 40960, 2)
    condor = parse(
        'executable = f.py\nrequest_gpus = 1\nrequire_gpus = Capability >= 8.0 && DeviceName == "A100"\n'
        "gpus_minimum_memory = 30000\nqueue\n"
    ).jobs[0]
    assert (condor.gpu_type, condor.gpu_capability, condor.gpu_memory_mb) == ("A100", 8.0, 30000)
    assert parse("executable = f.py\nGpusMinimumCapability = 7.5\n").jobs[0].gpu_capability == 7.5
    bracketed = parse("executable = f.py\nrequire_gpus = (Capability >= 7.5) && (GlobalMemoryMb >= 16000)\n").jobs[0]
    assert (bracketed.gpu_capability, bracketed.gpu_memory_mb, bracketed.request_gpus) == (7.5, 16000, 1)
    # A kind of GPU without a count asks for one.
    assert parse("executable = f.py\ngpu_type = T4\n").jobs[0].request_gpus == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "executable = f.py\nlabels = ib, fast net!\n",
            "job.txt:2: labels = ib, fast net!: 'net!' is not a label: use letters, digits, '.', '_' and '-' "
            "(such as gpu80, fast-net)",
        ),
        (
            "executable = f.py\ngpu_type = T4\nrequest_gpus = 0\n",
            "job.txt:2: gpu_type chooses a kind of GPU, but request_gpus = 0; ask for 1 or more",
        ),
        (
            "executable = f.py\ngpus_minimum_capability = new\n",
            "job.txt:2: gpus_minimum_capability = new: write a CUDA compute capability, such as 8.0",
        ),
        (
            "executable = f.py\nrequire_gpus = GlobalMemoryMb >= 1000 || Capability > 7\n",
            "job.txt:2: require_gpus: cannot read 'GlobalMemoryMb >= 1000 || Capability > 7'; write clauses like "
            'Capability >= 8.0, GlobalMemoryMb >= 40000 or DeviceName == "NVIDIA A100", joined by &&',
        ),
        (
            "executable = f.py\ngpu_memory = lots\n",
            "job.txt:2: 'lots' is not a size; write it like 512MB, 4GB or 2048 (a bare number is MB)",
        ),
    ],
)
def test_bad_resource_values_are_refused_with_located_message(text, message):
    assert error_of(text) == message


NODES = [
    NodeOffer("node-1", 4, 8192, 2, labels=frozenset({"gpu"}), gpu_kinds={0: A100, 1: T4}),
    NodeOffer("node-2", 8, 65536, 0, labels=frozenset({"bigmem"})),
]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "executable = f.py\nlabels = fastnet\n",
            "job.txt:2: labels: no node has label 'fastnet'; labels on nodes: bigmem (node-2), gpu (node-1)",
        ),
        (
            "executable = f.py\nlabels = gpu, bigmem\n",
            "job.txt:2: labels: no node has all of the labels bigmem, gpu; "
            "labels on nodes: bigmem (node-2), gpu (node-1)",
        ),
        (
            "executable = f.py\nnode = node-7, node-8\n",
            "job.txt:2: node: no node is named node-7 or node-8; nodes are: node-1, node-2",
        ),
        (
            "executable = f.py\ngpu_type = H100\n",
            "job.txt:2: gpu_type: no node has 1 H100 GPU; GPUs on nodes: NVIDIA A100-SXM4-40GB 40960 MB cc 8, "
            "Tesla T4 16384 MB cc 7.5 (node-1); none (node-2)",
        ),
        (
            "executable = f.py\ngpu_type = T4\nrequest_gpus = 2\n",
            "job.txt:2: gpu_type: no node has 2 T4 GPUs; GPUs on nodes: NVIDIA A100-SXM4-40GB 40960 MB cc 8, "
            "Tesla T4 16384 MB cc 7.5 (node-1); none (node-2)",
        ),
        (
            "executable = f.py\nlabels = bigmem\nrequest_cpus = 16\n",
            "job.txt:3: request_cpus asks for 16 cpus but the largest node has 8 cpus; ask for at most 8 cpus",
        ),
        (
            "executable = f.py\nlabels = gpu\nrequest_memory = 16GB\n",
            "job.txt:3: request_memory asks for 16384 MB but the largest node has 8192 MB; ask for at most 8192 MB",
        ),
    ],
)
def test_a_choice_no_node_could_ever_meet_is_refused_naming_what_exists(text, message):
    assert error_of(text, NODES) == message


def test_a_label_missing_on_the_pinned_node_names_that_node_and_every_nodes_labels():
    assert error_of("executable = f.py\nnode = node-2\nlabels = gpu\n", NODES) == (
        "job.txt:3: labels: no node it may use (node-2) has label 'gpu'; labels on nodes: bigmem (node-2), gpu (node-1)"
    )
    assert error_of("executable = f.py\navoid = node-1\ngpu_type = T4\n", NODES) == (
        "job.txt:3: gpu_type: no node it may use (node-2) has 1 T4 GPU; GPUs on nodes: none (node-2)"
    )


def test_a_choice_some_node_meets_is_accepted():
    check_nodes(parse("executable = f.py\nlabels = gpu\ngpu_type = t4\navoid = node-2\n"), NODES)


# --- node side: labels and declared GPUs -------------------------------------------------------------


def test_declared_gpus_carry_name_memory_and_capability():
    assert declared_gpus("A100:40GB:8.0, T4:16GB") == [Gpu(0, "A100", 40960, capability=8.0), Gpu(1, "T4", 16384)]
    assert [g.name for g in declared_gpus("2")] == ["declared GPU"] * 2


def test_labels_are_names():
    assert split_names("ib, avx512 gpu80&ib") == ["ib", "avx512", "gpu80"]
    with pytest.raises(LabelError):
        split_names("ib,/etc")


# --- the reason a job waits ----------------------------------------------------------------------------


def view(name, labels=(), gpus=(), free_gpus=None):
    kinds = dict(enumerate(gpus))
    free = tuple(kinds) if free_gpus is None else tuple(free_gpus)
    return NodeView(
        name,
        True,
        True,
        4,
        8192,
        len(kinds),
        4,
        8192,
        len(free),
        labels=frozenset(labels),
        gpu_kinds=kinds,
        free_gpu_indices=free,
    )


def test_a_waiting_jobs_reason_names_the_label_no_node_has():
    facts = WaitFacts((view("node-1", labels={"gpu"}), view("node-2", labels={"bigmem"})))
    request = Request("queued", 1, 256, 0, wants=Wants(labels=frozenset({"fastnet"})))
    assert explain_wait(request, facts) == "no node has label 'fastnet'; labels on nodes: bigmem (node-2), gpu (node-1)"


def test_a_waiting_gpu_kind_job_names_the_free_gpus_of_its_kind():
    facts = WaitFacts((view("node-1", gpus=(A100, T4), free_gpus=(0,)),))
    request = Request("queued", 1, 256, 1, wants=Wants(gpu_type="T4"))
    assert explain_wait(request, facts) == "needs 1 T4 GPU, node-1 has 0 free"


def test_a_waiting_jobs_reason_says_when_the_only_nodes_that_fit_are_down():
    down = NodeView("node-2", False, False, 4, 8192, 0, 4, 8192, 0, labels=frozenset({"fastnet"}))
    facts = WaitFacts((view("node-1", labels={"gpu"}), down))
    request = Request("queued", 1, 256, 0, wants=Wants(labels=frozenset({"fastnet"})))
    assert explain_wait(request, facts) == (
        "only node-2 has what it asks for (node, labels, GPU kind), and it takes no jobs now (offline or drained)"
    )


def test_nvml_gives_each_gpu_its_name_memory_capability_and_uuid(monkeypatch):
    # This machine has no NVIDIA driver: a stand-in for NVML's API (the calls metrics makes, as
    # nvidia-ml-py names them) proves what becomes of its answers.  On a GPU node, NVML answers itself.
    import types

    from dctoolkit.nodes.worker import metrics

    devices = [("NVIDIA H200", 143771 * 2**20, (9, 0), "GPU-aaaa"), (b"Tesla T4", 15360 * 2**20, (7, 5), b"GPU-bbbb")]
    fake = types.SimpleNamespace(
        NVMLError=RuntimeError,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda i: devices[i],
        nvmlDeviceGetName=lambda h: h[0],
        nvmlDeviceGetUUID=lambda h: h[3],
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=h[1]),
        nvmlDeviceGetCudaComputeCapability=lambda h: h[2],
        nvmlSystemGetCudaDriverVersion_v2=lambda: 12040,
    )
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    assert metrics._probe_nvml() == (
        [Gpu(0, "NVIDIA H200", 143771, "GPU-aaaa", 9.0), Gpu(1, "Tesla T4", 15360, "GPU-bbbb", 7.5)],
        "12.4",
    )
