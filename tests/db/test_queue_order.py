"""The portal's queue order is the order the scheduler really places jobs in: one fair-share rule.

A queue of several users, two of them with equal usage (and the lower user
id named last alphabetically, so a tie broken by name would show), one
whose usage ties with the others' charge part-way, one behind them all.
The waiting list is asked for its order; then real scheduling passes place
the jobs, one free slot at a time and all at once, and the placement order
is recorded.  Sending is replaced by a list (Redis is the integration
tests' business); everything else is the real code on the real database.
"""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from dctoolkit.accounts.models import Account
from dctoolkit.accounts.reports import usage_payload
from dctoolkit.jobs.models import Job, JobState, Submission
from dctoolkit.jobs.scheduling import dispatch
from dctoolkit.jobs.scheduling.waiting import queue_order, waiting_page
from dctoolkit.nodes.models import Node, NodeState


@pytest.fixture
def sent(monkeypatch):
    """The (job id, attempt, node) messages the passes send, in the order they are placed."""
    messages = []
    monkeypatch.setattr(dispatch, "send_runs", lambda sends: messages.extend(sends) or len(sends))
    return messages


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def queue(db, now):
    """user name -> their queued jobs' ids, oldest first; submitted interleaved, so id order is not the answer."""
    users = {name: get_user_model().objects.create_user(name) for name in ("zed", "amy", "cat", "dan")}
    # zed and amy: no usage (a tie: zed has the lower id).  cat: 3 cpu-seconds, equal to zed's and amy's
    # charge after three jobs each.  dan: 5.5.  Recorded at `now`, so nothing decays between the two askings.
    for name, usage in (("cat", 3.0), ("dan", 5.5)):
        Account.objects.create(user=users[name], usage=usage, usage_at=now)
    jobs: dict[str, list[int]] = {name: [] for name in users}
    for name in ["dan", "cat", "amy", "zed", "amy", "cat", "zed", "dan", "zed", "amy", "cat", "amy", "zed"]:
        owner = users[name]
        sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
        job = Job.objects.create(submission=sub, owner=owner, name="t", executable="t.sh", submitted_at=now)
        jobs[name].append(job.id)
    return jobs


def make_node(slots: int, now) -> Node:
    return Node.objects.create(
        name="node-1", state=NodeState.ONLINE, slots=slots, cpus=slots, threads=slots, memory_total_mb=64_000,
        memory_available_mb=64_000, sandbox=True, last_heartbeat=now,
    )  # fmt: skip


def served(queue: dict[str, list[int]], turns: str) -> list[int]:
    """Job ids for a sequence of user initials, each user's jobs taken oldest first."""
    names = {name[0]: name for name in queue}
    taken = {name: 0 for name in queue}
    ids = []
    for initial in turns:
        name = names[initial]
        ids.append(queue[name][taken[name]])
        taken[name] += 1
    return ids


# By hand: zed and amy alternate (zed first: lower id), each job charging 1; after three each, their charge
# ties cat's 3.0 (zed, amy, cat by id); cat's next turns at 4 and 5; dan's at 5.5 and 6.5.
EXPECTED = "zazazazacccdd"


def portal_order(now) -> tuple[list[int], dict[int, int]]:
    page = waiting_page(Job.objects.all(), queue_order(now), None, 1)
    return [job.id for job in page.jobs], page.positions


def test_the_waiting_list_shows_the_fair_share_order_with_its_tie_break(queue, now):
    ids, positions = portal_order(now)
    assert ids == served(queue, EXPECTED)
    assert [positions[i] for i in ids] == list(range(1, 14))


def test_the_scheduler_places_jobs_one_free_slot_at_a_time_in_the_portals_order(queue, now, sent):
    shown, _ = portal_order(now)
    node = make_node(1, now)
    for slots in range(1, 14):
        Node.objects.filter(id=node.id).update(slots=slots)  # one more free slot; the placed jobs stay dispatched
        assert dispatch.schedule_pass(now) == 1
    assert [job_id for job_id, *_ in sent] == shown


def test_one_pass_with_every_slot_free_places_them_in_the_portals_order(queue, now, sent):
    shown, _ = portal_order(now)
    make_node(13, now)
    assert dispatch.schedule_pass(now) == 13
    assert [job_id for job_id, *_ in sent] == shown


def test_each_users_own_page_shows_the_same_places_as_the_whole_queue(queue, now):
    order = queue_order(now)
    _, everyone = portal_order(now)
    users = get_user_model().objects.in_bulk(field_name="username")
    for name, ids in queue.items():
        own = waiting_page(Job.objects.filter(owner=users[name]), order, users[name].id, 1)
        assert [job.id for job in own.jobs] == ids
        assert own.positions == {i: everyone[i] for i in ids}, name


def test_the_reason_counts_the_jobs_the_scheduler_serves_first_and_usage_ranks_by_the_same_rule(queue, now):
    order = queue_order(now)
    users = get_user_model().objects.in_bulk(field_name="username")
    ahead = {name: order.ahead_of(users[name].id) for name in queue}
    # Before each user's oldest job: zed none; amy zed's first (a tie, lower id); cat all 8 of zed's and amy's
    # (their fourth turns tie hers at 3, and they have lower ids); dan everyone else's 11.
    assert ahead == {"zed": 0, "amy": 1, "cat": 8, "dan": 11}
    assert [row["user"] for row in usage_payload(now)] == ["zed", "amy", "cat", "dan"]
    assert [row["priority"] for row in usage_payload(now)] == [1, 2, 3, 4]


def test_a_dispatched_job_keeps_charging_its_owner_until_it_has_run(queue, now, sent):
    make_node(1, now)
    dispatch.schedule_pass(now)
    (placed,) = [job_id for job_id, *_ in sent]
    assert Job.objects.get(id=placed).state == JobState.DISPATCHED
    rows = {row["user"]: row for row in usage_payload(now)}
    assert (rows["zed"]["usage"], rows["amy"]["usage"]) == (1.0, 0.0)
