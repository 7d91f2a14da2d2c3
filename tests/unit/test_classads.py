"""ClassAd `requirements` and `rank` (HTCondor's own classad2 evaluates them), `request_disk`'s units, the
refusal at submit that names the closest node, and the planner honouring requirements, rank and free disk.
Pure functions, no services."""

import pytest

from dctoolkit.jobs.intake.parse import NodeOffer, SubmissionError, check_nodes, parse_submission
from dctoolkit.jobs.scheduling.classads import NodeAttrs, closest_miss, holds, rank_of, split_clauses, verdicts
from dctoolkit.jobs.scheduling.matching import AdAsk, Wants, wants_from
from dctoolkit.jobs.scheduling.policy import FreeNode, QueuedJob, pick_assignments
from dctoolkit.jobs.scheduling.reasons import NodeView, Request, WaitFacts, explain_wait

SMALL = NodeAttrs("node-1", 4, 16000, 50 * 2**20, 0, "X86_64", ("ib", "fast-net"))
BIG = NodeAttrs("node-2", 16, 128000, 10 * 2**20, 2, "X86_64", ("bigmem",))


def ask(requirements="", rank="", cpus=1, memory_mb=1024, disk_mb=0, gpus=0):
    return AdAsk(requirements, rank, cpus, memory_mb, disk_mb, gpus)


# --- evaluation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "on_small", "on_big"),
    [
        ('OpSys == "LINUX" && Arch == "X86_64"', True, True),
        ("Memory >= 64000", False, True),
        ("TARGET.Memory >= 100 * MY.RequestMemory", False, True),  # 102400 MB asked of 16000 and 128000
        ("Memory >= RequestMemory && Cpus >= RequestCpus", True, True),
        ("Has_ib", True, False),  # UNDEFINED on node-2: not true, no match (as HTCondor)
        ('member("fast-net", Labels)', True, False),
        ("HAS_IB =?= true", True, False),  # names are case-insensitive
        ("Has_ib =!= true", False, True),
        ('Machine == "node-2" || GPUs >= 2', False, True),
        ("Disk >= 20 * 1024 * 1024", True, False),  # KB of free scratch space
        ("Memory", True, True),  # a non-zero number matches, as ClassAd.matches converts it
        ("HasSingularity", False, False),  # no node has it
        ('Memory > "lots"', False, False),  # ERROR: no match
    ],
)
def test_requirements_are_evaluated_by_htcondors_classad_library(expression, on_small, on_big):
    assert (holds(expression, SMALL, ask()), holds(expression, BIG, ask())) == (on_small, on_big)


def test_rank_is_a_number_and_anything_else_ranks_zero():
    assert rank_of("Memory", BIG, ask()) == 128000.0
    assert rank_of("Has_ib * 10 + Cpus", SMALL, ask()) == 14.0  # true counts 1 in arithmetic
    assert rank_of("Has_ib * 10 + Cpus", BIG, ask()) == 0.0  # UNDEFINED there
    assert rank_of("(Has_ib =?= true) * 10 + Cpus", BIG, ask()) == 16.0
    assert rank_of('Machine == "node-1"', SMALL, ask()) == 1.0
    assert rank_of("NoSuchThing", SMALL, ask()) == 0.0
    assert rank_of("", SMALL, ask()) == 0.0


def test_verdicts_name_the_eligible_nodes_and_the_rank_of_each():
    wanted = ask("Cpus >= 4", "-Memory")
    assert verdicts([wanted, wanted], [SMALL, BIG]) == {
        wanted: verdicts([wanted], [SMALL, BIG])[wanted],
    }
    verdict = verdicts([wanted], [SMALL, BIG])[wanted]
    assert verdict.eligible == {"node-1", "node-2"} and verdict.rank("node-1") > verdict.rank("node-2")


def test_top_level_clauses_split_outside_brackets_and_strings():
    assert split_clauses('(a && b) && c == "x&&y" && ((d) || e) && (f)') == ["a && b", 'c == "x&&y"', "(d) || e", "f"]


# --- the closest node ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            # Neither meets it: the closest is the largest.
            "Memory >= 200000",
            "no node meets it; the closest, node-2, fails Memory >= 200000 (its Memory is 128000)",
        ),
        (
            # node-2 meets one clause of two, node-1 none: node-2 is the closest.
            "(Memory >= 64000) && (Cpus >= 32)",
            "no node meets it; the closest, node-2, fails Cpus >= 32 (its Cpus is 16)",
        ),
        (
            "Has_ib && GPUs >= 1 && Cpus < 8",
            "no node meets it; the closest, node-1, fails GPUs >= 1 (its GPUs is 0)",
        ),
        (
            "Memory >= 64000 && Has_ib",
            "no node meets it; the closest, node-2, fails Has_ib (it has no Has_ib)",
        ),
        (
            "Disk >= RequestDisk",
            "no node meets it; the closest, node-2, fails Disk >= RequestDisk "
            "(its Disk is 10485760, the job's RequestDisk is 104857600)",
        ),
        (
            'OpSys == "LINUX" && HAS_SINGULARITY == true',
            "no node meets it; the closest, node-2, fails HAS_SINGULARITY == true (no node has HAS_SINGULARITY; "
            "nodes have Machine, Name, Cpus, Memory, Disk, GPUs, OpSys, Arch, Labels, Has_<label>; "
            "labels on nodes: bigmem, fast-net, ib)",
        ),
    ],
)
def test_a_miss_names_the_closest_node_and_the_clause_it_fails(expression, message):
    miss = closest_miss(expression, [SMALL, BIG], ask(disk_mb=100 * 1024))
    assert miss is not None and miss.message() == message


def test_no_miss_when_one_node_meets_it_or_no_node_is_known():
    assert closest_miss("Memory >= 64000", [SMALL, BIG], ask()) is None
    assert closest_miss("Memory >= 1000000000", [], ask()) is None


# --- the submission -----------------------------------------------------------------------------------

OFFERS = [
    NodeOffer("node-1", 4, 16000, 0, disk_free_mb=50 * 1024, labels=frozenset({"ib"}), arch="X86_64"),
    NodeOffer("node-2", 16, 128000, 0, disk_free_mb=10 * 1024, labels=frozenset({"bigmem"}), arch="X86_64"),
]


def parse(text):
    return parse_submission(text, "job.sub")


def error_of(text, nodes=()):
    with pytest.raises(SubmissionError) as info:
        check_nodes(parse(text), list(nodes))
    return str(info.value)


def test_requirements_and_rank_become_the_jobs_wants():
    job = parse('executable = f.py\nrequirements = (Memory >= 4096) && (OpSys == "LINUX")\nrank = Memory\nqueue\n')
    wants = job.jobs[0].wants
    assert (wants.requirements, wants.rank) == ('(Memory >= 4096) && (OpSys == "LINUX")', "Memory")
    assert wants_from(wants.as_dict()) == wants
    # HTCondor's spellings: keys are case-insensitive.
    assert parse("executable = f.py\nRequirements = Has_ib\nRank = -Cpus\n").jobs[0].wants.rank == "-Cpus"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "executable = f.py\nrequirements = (Memory >= \n",
            "job.sub:2: requirements = (Memory >=: not a ClassAd expression; write it as HTCondor does, such as "
            '(Memory >= 4096) && (OpSys == "LINUX") && member("ib", Labels)',
        ),
        (
            'executable = f.py\nrank = Memory +* "x\n',
            'job.sub:2: rank = Memory +* "x: not a ClassAd expression; write it as HTCondor does, such as '
            '(Memory >= 4096) && (OpSys == "LINUX") && member("ib", Labels)',
        ),
    ],
)
def test_an_expression_classad2_cannot_read_is_refused_at_its_line(text, message):
    assert error_of(text) == message


def test_every_bad_expression_is_named_at_once():
    with pytest.raises(SubmissionError) as info:
        parse("executable = f.py\nrequirements = Memory >\nrank = (Cpus\n")
    assert [line for line, _ in info.value.problems] == [2, 3]


def test_requirements_no_node_meets_are_refused_naming_the_closest_node():
    text = "executable = f.py\nrequest_memory = 1GB\nrequirements = Has_ib && Memory >= 64000 && Cpus < 8\nqueue\n"
    assert error_of(text, OFFERS) == (
        "job.sub:3: requirements: no node meets it; the closest, node-1, fails Memory >= 64000 (its Memory is 16000)"
    )
    check_nodes(parse("executable = f.py\nrequirements = Has_bigmem && Memory >= 64000\n"), OFFERS)
    check_nodes(parse("executable = f.py\nrequirements = Memory >= 10000000\n"), [])  # no node known: accepted


def test_requirements_narrow_the_nodes_the_size_checks_use():
    # Only node-1 has ib: 8 cpus is more than it has, though node-2 has 16.
    assert error_of("executable = f.py\nrequirements = Has_ib\nrequest_cpus = 8\n", OFFERS) == (
        "job.sub:3: request_cpus asks for 8 cpus but the largest node has 4 cpus; ask for at most 4 cpus"
    )


def test_each_distinct_requirement_of_a_batch_is_checked():
    text = "executable = f.py\nrequirements = Cpus >= $(c)\nqueue c in (4 16 32)\n"
    assert "fails Cpus >= 32 (its Cpus is 16)" in error_of(text, OFFERS)


@pytest.mark.parametrize(
    ("value", "mb"),
    [("10GB", 10240), ("10 GB", 10240), ("500MB", 500), ("2048", 2), ("1", 1), ("1048576", 1024), ("1.5G", 1536)],
)
def test_request_disk_takes_units_and_a_bare_number_is_kb(value, mb):
    job = parse(f"executable = f.py\nrequest_disk = {value}\n").jobs[0]
    assert job.request_disk_mb == mb and job.wants.disk_mb == mb


def test_request_disk_reads_as_requestdisk_in_kb_and_beyond_every_nodes_free_space_is_refused():
    check_nodes(parse("executable = f.py\nrequest_disk = 40GB\nrequirements = Disk >= RequestDisk\n"), OFFERS)
    assert error_of("executable = f.py\nrequest_disk = 40GB\nrequirements = Disk >= RequestDisk && Has_bigmem\n",
                    OFFERS) == (
        "job.sub:3: requirements: no node meets it; the closest, node-2, fails Disk >= RequestDisk "
        "(its Disk is 10485760, the job's RequestDisk is 41943040)"
    )  # fmt: skip


# --- the planner ----------------------------------------------------------------------------------------


def free(name, cpus=4, memory_mb=16000, disk_mb=None):
    return FreeNode(name, cpus, memory_mb, cpus, memory_mb, free_disk_mb=disk_mb)


def placed(jobs, nodes, ads):
    asks = [job.ad for job in jobs if job.ad is not None]
    picks = pick_assignments({1: jobs}, nodes, {}, (), verdicts(asks, ads))
    return {a.job_id: a.node for a in picks.assignments}


def test_the_planner_places_only_where_requirements_hold_and_prefers_the_highest_rank():
    nodes, ads = [free("node-1"), free("node-2", cpus=16)], [SMALL, BIG]
    ib = QueuedJob(1, 1, wants=Wants(requirements="Has_ib"))
    assert placed([ib], nodes, ads) == {1: "node-1"}
    # Best fit alone would take node-1 (fewer free cpus); rank says node-2.
    most_memory = QueuedJob(2, 1, wants=Wants(rank="Memory"))
    assert placed([most_memory], nodes, ads) == {2: "node-2"}
    assert placed([QueuedJob(3, 1, wants=Wants(requirements="Memory > 1000000000"))], nodes, ads) == {}


def test_a_job_whose_verdict_is_missing_is_placed_nowhere():
    job = QueuedJob(1, 1, wants=Wants(requirements="true"))
    assert pick_assignments({1: [job]}, [free("node-1")], {}).assignments == []


def test_request_disk_is_placed_by_free_scratch_space_and_taken_from_it_within_a_pass():
    disk = Wants(disk_mb=6000)
    jobs = [QueuedJob(i, 1, wants=disk) for i in (1, 2)]
    picks = pick_assignments({1: jobs}, [free("node-1", disk_mb=10000), free("node-2", cpus=8, disk_mb=13000)], {})
    # Best fit puts the first on node-1; then node-1 has 4000 MB left, so the second goes to node-2.
    assert [(a.job_id, a.node) for a in picks.assignments] == [(1, "node-1"), (2, "node-2")]
    assert pick_assignments({1: jobs[:1]}, [free("node-1", disk_mb=5000)], {}).assignments == []
    # Free space not known (0 reported): not a reason to wait.
    assert len(pick_assignments({1: jobs[:1]}, [free("node-1")], {}).assignments) == 1


# --- the reason a job waits -----------------------------------------------------------------------------


def view(ad, online=True, free_cpus=4, free_disk_mb=None):
    return NodeView(ad.name, online, online, ad.cpus, ad.memory_mb, ad.gpus, free_cpus, ad.memory_mb, ad.gpus,
                    labels=frozenset(ad.labels), ad=ad, free_disk_mb=free_disk_mb)  # fmt: skip


def test_a_waiting_jobs_reason_names_its_requirements_when_no_node_taking_jobs_meets_them():
    request = Request("queued", 1, 256, 0, wants=Wants(requirements="Memory >= 64000"))
    assert explain_wait(request, WaitFacts((view(SMALL), view(BIG, online=False)))) == (
        "its requirements hold only on node-2, which takes no jobs now (offline or drained)"
    )
    assert explain_wait(request, WaitFacts((view(SMALL),))) == (
        "requirements: no node meets it; the closest, node-1, fails Memory >= 64000 (its Memory is 16000)"
    )
    # Where they hold and the node is busy, the reason is the busy node.
    assert explain_wait(request, WaitFacts((view(SMALL), view(BIG, free_cpus=0)))) == (
        "waiting for a free cpu: node-2, the only node, is busy"
    )


def test_a_waiting_jobs_reason_names_the_free_scratch_space_it_lacks():
    request = Request("queued", 1, 256, 0, wants=Wants(disk_mb=20480))
    assert explain_wait(request, WaitFacts((view(SMALL, free_disk_mb=10240),))) == (
        "needs 20.0 GB of free scratch space, node-1 has 10.0 GB"
    )
