"""Accounting groups on the real database: `./dct group`, `accounting_group` checked at submit (Slurm --account,
PBS -A too), what a job charges, `usage --json`'s groups, caps by group, and the scheduler serving groups by
share first in the portal's order.  Sending is replaced by a list (Redis is the integration tests' business)."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dctoolkit.accounts.models import Group, Membership
from dctoolkit.accounts.usage import charge_job
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.scheduling import dispatch, wake
from dctoolkit.jobs.scheduling.waiting import queue_order, waiting_page
from dctoolkit.jobs.web.serializers import jobs_payload
from dctoolkit.nodes.models import Node, NodeState
from dctoolkit.operations.models import AuditEvent


@pytest.fixture(autouse=True)
def storage(settings, tmp_path, monkeypatch):
    settings.DCT_STORAGE = tmp_path / "storage"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: waking the scheduler is a no-op
    monkeypatch.setattr(wake, "_redis", None)
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")


@pytest.fixture
def users(db):
    make = get_user_model().objects.create_user
    return {name: make(name) for name in ("alice", "bob", "carol", "dave")}


def run_cli(*args, **options):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def submit_text(owner, tmp_path, text, name="job.sub"):
    return submit(text if text.startswith("#!") else f"executable = run.sh\n{text}", name, owner, FolderFiles(tmp_path))


def make_groups():
    run_cli("group", "add", "bio", "--share", "3")
    run_cli("group", "add", "chem")
    run_cli("group", "member", "bio", "alice", "bob")
    run_cli("group", "member", "chem", "carol", "alice")


def test_group_add_and_member_make_groups_change_a_share_and_are_in_the_audit_trail(users):
    assert run_cli("group", "add", "bio", "--share", "3") == "group 'bio' made share 3\n"
    assert run_cli("group", "add", "chem") == "group 'chem' made share 1\n"
    assert run_cli("group", "member", "bio", "alice", "bob") == "alice, bob added to group 'bio'\n"
    assert run_cli("group", "member", "bio", "alice") == "nothing changed: all of them are in group 'bio'\n"
    assert run_cli("group", "add", "chem", "--share", "0.5") == "group 'chem' now has share 0.5\n"
    assert run_cli("group", "member", "bio", "bob", "--remove") == "bob removed from group 'bio'\n"
    assert json.loads(run_cli("group", "--json")) == {
        "groups": [{"group": "bio", "share": 3.0, "members": ["alice"]}, {"group": "chem", "share": 0.5, "members": []}]
    }
    recorded = list(AuditEvent.objects.order_by("id").values_list("action", "target_kind", "target", "details"))
    assert recorded == [
        ("group", "group", "bio", {"share": 3.0, "created": True}),
        ("group", "group", "chem", {"share": 1.0, "created": True}),
        ("member", "group", "bio", {"added": ["alice", "bob"]}),
        ("group", "group", "chem", {"share": 0.5, "before": {"share": 1.0}}),
        ("member", "group", "bio", {"removed": ["bob"]}),
    ]


def test_group_refuses_what_it_cannot_do_saying_what_to_write(users):
    run_cli("group", "add", "bio")
    with pytest.raises(CommandError, match="group 'bio' exists already; give --share S to change its share"):
        run_cli("group", "add", "bio")
    with pytest.raises(CommandError, match="'b io' is not a group name"):
        run_cli("group", "add", "b io")
    with pytest.raises(CommandError, match="share 0: a share is a number above 0"):
        run_cli("group", "add", "phys", "--share", "0")
    with pytest.raises(CommandError, match=r"no group 'phys' \(groups: bio\); ./dct group add phys makes it"):
        run_cli("group", "member", "phys", "alice")
    with pytest.raises(CommandError, match="no user 'zoe'"):
        run_cli("group", "member", "bio", "alice", "zoe")
    assert not Membership.objects.exists(), "nothing added when one name is wrong"


def test_changing_groups_is_for_operators(users, settings):
    settings.SECRET_KEY = ""
    with pytest.raises(CommandError, match="only an operator"):
        run_cli("group", "add", "bio")
    assert run_cli("group") == "no groups; ./dct group add NAME [--share S] makes one\n"


def test_a_job_charges_its_accounting_group_or_its_owners_first_and_the_job_object_says_which(users, tmp_path):
    make_groups()
    (first,) = submit_text(users["alice"], tmp_path, "queue\n")
    (chosen,) = submit_text(users["alice"], tmp_path, "accounting_group = chem\nqueue\n")
    (alone,) = submit_text(users["dave"], tmp_path, "queue\n")
    assert [j.accounting_group.name if j.accounting_group else None for j in (first, chosen, alone)] == [
        "bio",
        "chem",
        None,
    ]
    shown = jobs_payload(
        list(Job.objects.filter(id__in=[first.id, chosen.id, alone.id]).order_by("id")), timezone.now()
    )
    assert [j["accounting_group"] for j in shown] == ["bio", "chem", None]
    slurm = "#!/bin/sh\n#SBATCH --account=chem\n#SBATCH -J s\necho hi\n"
    pbs = "#!/bin/sh\n#PBS -A chem\n#PBS -N p\necho hi\n"
    for text, name in ((slurm, "s.sh"), (pbs, "p.pbs")):
        (job,) = submit_text(users["carol"], tmp_path, text, name)
        assert job.accounting_group.name == "chem", name


def test_a_group_that_does_not_exist_or_a_submitter_who_is_not_in_it_is_refused_at_its_line(users, tmp_path):
    make_groups()
    with pytest.raises(SubmissionError) as info:
        submit_text(users["carol"], tmp_path, "request_cpus = 1\naccounting_group = bio\nqueue\n")
    assert str(info.value) == (
        "job.sub:3: accounting_group = bio: carol is not a member of group 'bio' (their groups: chem); an operator "
        "adds them with ./dct group member bio carol"
    )
    with pytest.raises(SubmissionError) as info:
        submit_text(users["dave"], tmp_path, "accounting_group = phys\nqueue\n")
    assert str(info.value) == "job.sub:2: accounting_group = phys: no group 'phys' (groups: bio, chem; dave's: none)"
    with pytest.raises(SubmissionError, match=r"job.sub:2: .*carol is not a member of group 'bio'"):
        submit_text(users["carol"], tmp_path, "#!/bin/sh\n#SBATCH --account=bio\necho hi\n")
    assert Job.objects.count() == 0, "nothing queued"


def test_usage_json_lists_the_groups_with_share_usage_priority_and_members(users, tmp_path):
    make_groups()
    now = timezone.now()
    charge_job(users["alice"].id, 1, 600.0, now, group_id=Group.objects.get(name="bio").id)
    charge_job(users["carol"].id, 1, 300.0, now, group_id=Group.objects.get(name="chem").id)
    found = json.loads(run_cli("usage", "--json"))
    assert [(g["group"], g["share"], g["priority"], g["members"]) for g in found["groups"]] == [
        ("bio", 3.0, 1, ["alice", "bob"]),  # 600 / 3 = 200 before chem's 300 / 1
        ("chem", 1.0, 2, ["carol", "alice"]),
    ]
    assert [round(g["usage"]) for g in found["groups"]] == [600, 300]
    rows = {r["user"]: r for r in found["users"]}
    assert (rows["alice"]["group"], rows["carol"]["group"]) == ("bio", "chem")
    # The users' order is by group first: carol (used 300) goes after alice (used 600), whose group is ahead.
    assert [r["user"] for r in found["users"]] == ["alice", "carol"]
    assert "bio" in run_cli("usage") and "MEMBERS" in run_cli("usage")


def test_a_groups_caps_hold_for_its_members_unless_they_have_their_own(users, tmp_path, sent):
    make_groups()
    run_cli("limits", "bio", "--group", "--max-running-jobs", "1")
    assert run_cli("limits", "bob").splitlines()[0] == "max_running_jobs: 1 (./dct limits --group bio)"
    assert json.loads(run_cli("limits", "bio", "--group", "--json"))["max_running_jobs"] == 1
    Node.objects.create(name="n1", state=NodeState.ONLINE, slots=8, cpus=8, threads=8, memory_total_mb=8192,
                        memory_available_mb=8192, sandbox=True, last_heartbeat=timezone.now())  # fmt: skip
    submit_text(users["bob"], tmp_path, "queue 3\n")
    submit_text(users["dave"], tmp_path, "queue 2\n")
    assert dispatch.schedule_pass(timezone.now()) == 3, "bob one (the group's cap), dave both"
    waiting = list(Job.objects.filter(owner=users["bob"], state=JobState.QUEUED).order_by("id"))
    assert len(waiting) == 2
    assert jobs_payload(waiting, timezone.now())[0]["reason"] == (
        "held back by a cap: bob may run 1 jobs at once and runs 1 "
        "(DCT_MAX_RUNNING_JOBS, ./dct limits --group bio or ./dct limits bob)"
    )
    (event,) = AuditEvent.objects.filter(action="limits")
    assert (event.target_kind, event.target, event.details["after"]["max_running_jobs"]) == ("group", "bio", 1)
    with pytest.raises(CommandError, match=r"no group 'phys' \(groups: bio, chem\)"):
        run_cli("limits", "phys", "--group")


def bio_running() -> tuple[int, int]:
    """(jobs, GPUs) of the dispatched jobs charging bio."""
    jobs = Job.objects.filter(state=JobState.DISPATCHED, accounting_group__name="bio")
    return jobs.count(), sum(jobs.values_list("request_gpus", flat=True))


def test_a_groups_total_caps_hold_all_the_jobs_charging_it_together(users, tmp_path, sent):
    """bio (alice, bob) may run 3 jobs and hold 2 GPUs in all (Slurm's GrpJobs, GrpTRES=gres/gpu); the node has
    6 GPUs and 16 cpus, so without the caps every job here would start."""
    make_groups()
    run_cli("limits", "bio", "--group", "--total-running-jobs", "3", "--total-running-gpus", "2")
    assert run_cli("limits", "bio", "--group") == (
        "max_running_jobs: no cap (DCT_MAX_RUNNING_JOBS; each member)\n"
        "max_running_gpus: no cap (DCT_MAX_RUNNING_GPUS; each member)\n"
        "max_queued_jobs: no cap (DCT_MAX_QUEUED_JOBS; each member)\n"
        "total_running_jobs: 3 (./dct limits --group bio; all members together)\n"
        "total_running_gpus: 2 (./dct limits --group bio; all members together)\n"
    )
    shown = json.loads(run_cli("limits", "bio", "--group", "--json"))
    assert (shown["total_running_jobs"], shown["total_running_gpus"]) == (3, 2)
    (event,) = AuditEvent.objects.filter(action="limits")
    assert {k: v for k, v in event.details["after"].items() if k.startswith("total")} == {
        "total_running_jobs": 3,
        "total_running_gpus": 2,
    }
    gpus = [{"index": i, "name": "A100", "memory_mb": 40960} for i in range(6)]
    Node.objects.create(name="n1", state=NodeState.ONLINE, slots=16, cpus=16, threads=16, memory_total_mb=64_000,
                        memory_available_mb=64_000, sandbox=True, last_heartbeat=timezone.now(), gpus=gpus)  # fmt: skip
    bio_gpu = submit_text(users["alice"], tmp_path, "request_gpus = 1\nqueue 2\n")
    bio_gpu += submit_text(users["bob"], tmp_path, "request_gpus = 1\nqueue 2\n")
    bio_cpu = submit_text(users["bob"], tmp_path, "queue 2\n")
    chem = submit_text(users["carol"], tmp_path, "request_gpus = 1\nqueue 2\n")
    # alice's job charging chem is not bio's: bio's caps do not hold it.
    chem += submit_text(users["alice"], tmp_path, "accounting_group = chem\nrequest_gpus = 1\nqueue\n")
    assert dispatch.schedule_pass(timezone.now()) == 6
    assert bio_running() == (3, 2)
    assert Job.objects.filter(id__in=[j.id for j in chem], state=JobState.DISPATCHED).count() == 3
    waiting = list(Job.objects.filter(accounting_group__name="bio", state=JobState.QUEUED).order_by("id"))
    assert len(waiting) == 3
    reasons = {j["reason"] for j in jobs_payload(waiting, timezone.now())}
    assert reasons == {
        "held back by a cap: group bio may run 3 jobs at once, all members together, and runs 3 "
        "(./dct limits --group bio --total-running-jobs N)"
    }
    # No cap on jobs now, the GPUs' still: bio's cpu-only job starts, its GPU jobs wait though GPUs are free.
    run_cli("limits", "bio", "--group", "--total-running-jobs", "0")
    assert dispatch.schedule_pass(timezone.now()) == 1
    assert bio_running() == (4, 2)
    assert Job.objects.filter(id__in=[j.id for j in bio_cpu], state=JobState.DISPATCHED).count() == 2
    gpu_waiting = list(Job.objects.filter(id__in=[j.id for j in bio_gpu], state=JobState.QUEUED))
    assert len(gpu_waiting) == 2
    assert jobs_payload(gpu_waiting, timezone.now())[0]["reason"] == (
        "held back by a cap: group bio may hold 2 GPUs at once, all members together, and holds 2; this job needs 1 "
        "(./dct limits --group bio --total-running-gpus N)"
    )
    # The caps cost a pass one query (the capped groups' running jobs and GPUs), however many jobs wait.
    with CaptureQueriesContext(connection) as capped:
        dispatch.plan_pass(timezone.now())
    run_cli("limits", "bio", "--group", "--default")
    with CaptureQueriesContext(connection) as uncapped:
        plan = dispatch.plan_pass(timezone.now())
    assert len(capped) == len(uncapped) + 1
    assert plan is not None, "without the caps, a GPU job of bio's starts"
    assert [a.job_id in {j.id for j in gpu_waiting} for a in plan.assignments] == [True], "on the one GPU left"


def test_total_caps_are_a_groups_not_a_users(users):
    make_groups()
    with pytest.raises(CommandError, match=r"--total-running-gpus caps a group: ./dct limits --group NAME"):
        run_cli("limits", "alice", "--total-running-gpus", "2")


def test_the_scheduler_serves_groups_by_share_first_in_the_portals_order(users, tmp_path, sent):
    make_groups()  # bio (share 3): alice, bob; chem (share 1): carol (alice's first group is bio)
    for name in ("carol", "alice", "bob", "dave"):
        submit_text(users[name], tmp_path, "queue 6\n")
    now = timezone.now()
    page = waiting_page(Job.objects.all(), queue_order(now), None, 1)
    shown = [j.id for j in page.jobs]
    owners = {j.id: j.owner.username for j in page.jobs}
    Node.objects.create(name="n1", state=NodeState.ONLINE, slots=10, cpus=10, threads=10, memory_total_mb=64_000,
                        memory_available_mb=64_000, sandbox=True, last_heartbeat=now)  # fmt: skip
    assert dispatch.schedule_pass(now) == 10
    placed = [job_id for job_id, *_ in sent]
    assert placed == shown[:10], "the portal shows the order the scheduler places in"
    started = [owners[i] for i in placed]
    # bio's turns are charged over its share 3: alice and bob together get three for each of carol's and dave's.
    assert started.count("alice") + started.count("bob") == 6
    assert (started.count("carol"), started.count("dave")) == (2, 2)
    # Each user's own page gives their jobs the same places as the whole list.
    order = queue_order(now)
    rest = waiting_page(Job.objects.filter(state=JobState.QUEUED), order, None, 1)
    everyone = rest.positions
    for name in ("alice", "bob", "carol", "dave"):
        uid = users[name].id
        own = waiting_page(Job.objects.filter(owner_id=uid, state=JobState.QUEUED), order, uid, 1)
        assert own.positions == {j.id: everyone[j.id] for j in own.jobs}, name


def test_group_remove_takes_members_out_or_deletes_the_group_each_in_the_audit_trail(users, tmp_path):
    make_groups()
    AuditEvent.objects.all().delete()
    assert run_cli("group", "remove", "bio", "bob") == "bob removed from group 'bio'\n"
    assert run_cli("group", "remove", "bio", "bob") == "nothing changed: none of them was in group 'bio'\n"
    (ended,) = submit_text(users["alice"], tmp_path, "accounting_group = chem\nqueue\n")
    (pending,) = submit_text(users["carol"], tmp_path, "queue\n")
    # A job still to run charges chem: deleting it is refused, saying why, and nothing changes.
    with pytest.raises(CommandError) as info:
        run_cli("group", "remove", "chem")
    assert str(info.value) == (
        "group 'chem' is charged by 2 jobs not yet ended (of alice, carol); cancel them, or let them end, "
        "then delete it"
    )
    Job.objects.filter(id__in=[ended.id, pending.id]).update(state=JobState.SUCCEEDED)
    assert run_cli("group", "remove", "chem") == "group 'chem' deleted; carol, alice no longer in it\n"
    assert list(Group.objects.values_list("name", flat=True)) == ["bio"]
    assert not Membership.objects.filter(user=users["carol"]).exists()
    # The jobs stay; they no longer name a group.
    assert list(Job.objects.filter(id__in=[ended.id, pending.id]).values_list("accounting_group", flat=True)) == [
        None,
        None,
    ]
    with pytest.raises(CommandError, match=r"no group 'chem' \(groups: bio\); ./dct group add chem makes it"):
        run_cli("group", "remove", "chem")
    with pytest.raises(CommandError, match="no user 'zoe'"):
        run_cli("group", "remove", "bio", "zoe")
    recorded = list(AuditEvent.objects.order_by("id").values_list("action", "target", "details"))
    assert recorded == [
        ("member", "bio", {"removed": ["bob"]}),
        ("group", "chem", {"deleted": True, "share": 1.0, "members": ["carol", "alice"]}),
    ]
    assert json.loads(run_cli("group", "remove", "bio", "--json")) == {
        "group": "bio",
        "deleted": True,
        "members": ["alice"],
    }


def test_group_remove_is_for_operators(users, settings):
    make_groups()
    settings.SECRET_KEY = ""
    with pytest.raises(CommandError, match="only an operator"):
        run_cli("group", "remove", "bio")
    assert Group.objects.filter(name="bio").exists()
