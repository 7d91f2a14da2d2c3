"""ClassAd requirements and rank through the real submit and scheduling code on the test database: a
submission no node could ever meet is refused (nothing queued), a pass places where requirements hold and
rank prefers, and request_disk is kept and placed by free scratch space.

Sending is replaced by a list (Redis is the integration tests' business)."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling import dispatch
from dctoolkit.nodes.models import Node, NodeState


@pytest.fixture
def alice(db, settings, tmp_path):
    settings.DCT_STORAGE = tmp_path / "storage"
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    return get_user_model().objects.create_user("alice")


def make_node(name, slots=4, memory_mb=8192, labels=(), disk_mb=100 * 1024, arch="x86_64"):
    return Node.objects.create(
        name=name, state=NodeState.ONLINE, slots=slots, cpus=slots, threads=slots, memory_total_mb=memory_mb,
        memory_available_mb=memory_mb, disk_free_mb=disk_mb, labels=list(labels), arch=arch, sandbox=True,
        last_heartbeat=timezone.now(),
    )  # fmt: skip


def submit_text(owner, tmp_path, text):
    return submit(f"executable = run.sh\n{text}", "job.sub", owner, FolderFiles(tmp_path))


def placed(sent):
    """job id -> node name of what the passes sent (as the database has it)."""
    rows = Job.objects.filter(node__isnull=False).values_list("id", "node__name")
    assert sorted(job_id for job_id, *_ in sent) == sorted(job_id for job_id, _ in rows)
    return dict(rows)


def test_a_submission_no_node_could_meet_is_refused_naming_the_closest_node_and_nothing_is_queued(alice, tmp_path):
    make_node("node-1", memory_mb=16000, labels=("ib",))
    make_node("node-2", slots=16, memory_mb=64000, labels=("bigmem",))
    with pytest.raises(SubmissionError) as info:
        submit_text(alice, tmp_path, "requirements = Has_ib && Memory >= 32000 && Cpus < 8\nqueue 3\n")
    assert str(info.value) == (
        "job.sub:2: requirements: no node meets it; the closest, node-1, fails Memory >= 32000 (its Memory is 16000)"
    )
    assert not Job.objects.exists()


def test_arch_is_what_the_node_reported_in_htcondors_spelling(alice, tmp_path):
    make_node("node-1", arch="x86_64")
    with pytest.raises(SubmissionError, match=r'fails Arch == "aarch64" \(its Arch is "X86_64"\)'):
        submit_text(alice, tmp_path, 'requirements = Arch == "aarch64"\n')
    (job,) = submit_text(alice, tmp_path, 'requirements = Arch == "X86_64" && OpSys == "LINUX"\n')
    assert job.placement == {"requirements": 'Arch == "X86_64" && OpSys == "LINUX"'}


def test_a_pass_places_each_job_where_its_requirements_hold_and_its_rank_is_highest(alice, tmp_path, sent):
    make_node("node-1", slots=2, memory_mb=16000, labels=("ib",))
    make_node("node-2", slots=8, memory_mb=64000, labels=("bigmem",))
    make_node("node-3", slots=4, memory_mb=32000)
    ib = submit_text(alice, tmp_path, "requirements = Has_ib\nqueue 2\n")
    # Best fit alone would choose node-1 (fewest free cpus); rank prefers the most memory: node-2.
    ranked = submit_text(alice, tmp_path, "rank = Memory\nqueue 1\n")
    # Requirements over the job's own request: only node-2 and node-3 have 2 x 12000 MB.
    roomy = submit_text(alice, tmp_path, "request_memory = 12000\nrequirements = Memory >= 2 * RequestMemory\n")
    assert dispatch.schedule_pass(timezone.now()) == 4
    where = placed(sent)
    assert [where[j.id] for j in ib] == ["node-1", "node-1"]
    assert where[ranked[0].id] == "node-2"
    assert where[roomy[0].id] in ("node-2", "node-3")


def test_a_job_whose_requirements_hold_on_no_free_node_waits_and_does_not_block_the_pass(alice, tmp_path, sent):
    make_node("node-1", slots=1, labels=("ib",))
    make_node("node-2", slots=1)
    busy = submit_text(alice, tmp_path, "requirements = Has_ib\n")
    assert dispatch.schedule_pass(timezone.now()) == 1
    (waiting,) = submit_text(alice, tmp_path, "requirements = Has_ib\n")
    assert dispatch.schedule_pass(timezone.now()) == 0, "node-1 is full; node-2 has no ib"
    waiting.refresh_from_db()
    assert waiting.state == JobState.QUEUED and placed(sent) == {busy[0].id: "node-1"}


def test_request_disk_is_kept_and_a_pass_places_by_free_scratch_space(alice, tmp_path, sent):
    make_node("small-disk", slots=1, disk_mb=5 * 1024)
    make_node("big-disk", slots=8, disk_mb=50 * 1024)
    (job,) = submit_text(alice, tmp_path, "request_disk = 10GB\n")
    assert job.placement == {"disk_mb": 10240}
    assert dispatch.schedule_pass(timezone.now()) == 1
    assert placed(sent) == {job.id: "big-disk"}, "best fit would take small-disk, which has too little free"
