"""The portal's pages through Django's test client: what each shows, and who may see it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from dctoolkit.jobs.models import Job, JobState
from dctoolkit.jobs.web import views
from dctoolkit.jobs.web.history import state_counts
from dctoolkit.lib import pages
from dctoolkit.lib.units import format_seconds
from tests.portal.conftest import make_job

pytestmark = pytest.mark.django_db

NAV_LINKS = ("Home", "Nodes", "Queue", "Submit", "Completed", "Usage")


def page_urls(job_id: int) -> list[str]:
    return [
        "/",
        "/nodes/",
        "/queue/",
        "/submit/",
        "/completed/",
        "/usage/",
        "/flower/",
        f"/jobs/{job_id}/",
        f"/jobs/{job_id}/files/stdout",
    ]


# --- access control ----------------------------------------------------------------


def test_every_page_but_login_and_signup_needs_a_login(client, job):
    for url in page_urls(job.id):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url
    assert client.get("/accounts/login/").status_code == 200
    assert client.get("/accounts/signup/").status_code == 200


def test_job_actions_need_a_login(client, job):
    response = client.post(f"/jobs/{job.id}/cancel/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert Job.objects.get(id=job.id).state == JobState.SUCCEEDED


def test_another_users_job_and_its_files_are_404(client, job, other):
    client.force_login(other)
    for url in (f"/jobs/{job.id}/", f"/jobs/{job.id}/files/stdout", f"/jobs/{job.id}/files/outputs/result.csv"):
        assert client.get(url).status_code == 404, url
    queued = make_job(job.owner, state=JobState.QUEUED)
    assert client.post(f"/jobs/{queued.id}/cancel/").status_code == 404
    assert Job.objects.get(id=queued.id).state == JobState.QUEUED


def test_staff_see_anyones_job(client, job, staff):
    client.force_login(staff)
    response = client.get(f"/jobs/{job.id}/")
    assert response.status_code == 200
    assert "hello from the job" in response.text
    assert client.get(f"/jobs/{job.id}/files/stdout").status_code == 200


def test_another_users_jobs_stay_off_my_lists(client, job, other):
    theirs = make_job(other, name="bobs-secret-job")
    make_job(other, state=JobState.QUEUED, name="bobs-queued-job")
    client.force_login(job.owner)
    for url in ("/", "/completed/", "/queue/"):
        assert "bobs-" not in client.get(url).text, url
    client.force_login(User.objects.create_user("boss", is_staff=True))
    assert theirs.name in client.get("/completed/").text
    assert "bobs-queued-job" in client.get("/queue/").text


def test_flower_link_is_for_staff_only(client, owner, staff, settings):
    settings.DCT_FLOWER_URL = "http://localhost:5555/"
    client.force_login(owner)
    assert client.get("/flower/").status_code == 404
    assert ">Flower<" not in client.get("/").text
    client.force_login(staff)
    response = client.get("/flower/")
    assert response.status_code == 302
    assert response["Location"] == "http://localhost:5555/"
    assert ">Flower<" in client.get("/").text


# --- log in, sign up, log out -------------------------------------------------------


def test_login_with_username_and_password_then_logout(client, owner):
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_says_so(client, owner):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "did not match" in response.text


def test_signup_creates_the_account_and_logs_in(client):
    response = client.post(
        "/accounts/signup/",
        {"username": "carol", "email": "c@lab.org", "password1": "a-long-pass-456", "password2": "a-long-pass-456"},
    )
    assert response.status_code == 302
    assert User.objects.get(username="carol").email == "c@lab.org"
    assert "Welcome, carol" in client.get("/").text


def test_signup_shows_errors_beside_the_fields(client, owner):
    response = client.post(
        "/accounts/signup/", {"username": "alice", "password1": "a-long-pass-456", "password2": "different-789"}
    )
    assert response.status_code == 200
    assert 'data-error-for="username"' in response.text
    assert 'data-error-for="password2"' in response.text


def test_staff_can_turn_signup_off(client, settings):
    settings.DCT_ALLOW_SIGNUP = False
    assert client.get("/accounts/signup/").status_code == 404
    assert "Sign up" not in client.get("/accounts/login/").text


# --- pages ------------------------------------------------------------------------------


def test_every_page_has_the_navigation_bar(client, job):
    client.force_login(job.owner)
    for url in ("/", "/nodes/", "/queue/", "/submit/", "/completed/", "/usage/", f"/jobs/{job.id}/"):
        text = client.get(url).text
        for name in NAV_LINKS:
            assert f">{name}</a>" in text, (url, name)


def test_home_shows_my_recent_jobs_and_the_cluster_at_a_glance(client, job, node):
    make_job(job.owner, state=JobState.RUNNING, node=node, request_cpus=3)
    make_job(job.owner, state=JobState.QUEUED)
    client.force_login(job.owner)
    response = client.get("/")
    assert job.name in response.text
    summary = response.context["summary"]
    assert (summary["nodes_up"], summary["slots_busy"], summary["slots_total"], summary["queued"]) == (1, 3, 4, 1)


def test_home_counts_my_jobs_by_state_exactly_up_to_the_cap_and_then_says_so(client, owner, other):
    for _ in range(4):
        make_job(owner, state=JobState.SUCCEEDED)
    make_job(owner, state=JobState.FAILED)
    make_job(owner, state=JobState.QUEUED)
    make_job(other, state=JobState.FAILED)  # another user's jobs are not counted
    client.force_login(owner)
    assert client.get("/").context["counts"] == {"queued": "1", "succeeded": "4", "failed": "1"}
    assert state_counts(owner.pk, cap=3) == {"queued": "1", "succeeded": "3+", "failed": "1"}
    assert state_counts(owner.pk, cap=4) == {"queued": "1", "succeeded": "4", "failed": "1"}


def test_live_parts_answer_htmx_with_the_part_alone(client, job, node):
    client.force_login(job.owner)
    for url, part in (("/", "home-live"), ("/queue/", "queue-live"), ("/nodes/", "nodes-live")):
        text = client.get(url, headers={"HX-Request": "true"}).text
        assert f'id="{part}"' in text, url
        assert "<nav" not in text, url


def test_nodes_page_shows_each_nodes_metrics(client, owner, node):
    client.force_login(owner)
    text = client.get("/nodes/").text
    for fact in ("node-1", "box1", "available", "4 / 8", "5.9 GB of 8.0 GB", "Tesla T4", "CUDA 12.4", "0.42"):
        assert fact in text, fact
    assert f'datetime="{node.last_heartbeat.isoformat(timespec="microseconds")}"' in text


def test_queue_shows_running_with_elapsed_time_and_waiting_with_place_and_reason(client, owner, other, node):
    running = make_job(owner, state=JobState.RUNNING, node=node, name="long-fit")
    first = make_job(owner, state=JobState.QUEUED, request_cpus=64, name="too-big")
    second = make_job(owner, state=JobState.QUEUED, name="small")
    make_job(other, state=JobState.QUEUED)
    client.force_login(owner)
    response = client.get("/queue/")
    assert [j["id"] for j in response.context["running"]] == [running.id]
    assert response.context["running"][0]["run_seconds"] >= 240
    assert re.search(r">4m\d\ds<", response.text)  # units.format_seconds, as the command line writes it
    waiting = {j["id"]: j for j in response.context["waiting"]}
    assert set(waiting) == {first.id, second.id}
    assert waiting[first.id]["position"] < waiting[second.id]["position"]
    assert "64 cpus" in waiting[first.id]["reason"]
    assert waiting[first.id]["reason"] in response.text
    assert response.context["queue_length"] == 3


def test_completed_is_newest_first_filtered_and_paginated(client, owner):
    jobs = [make_job(owner, state=JobState.SUCCEEDED) for _ in range(26)]
    failed = make_job(owner, state=JobState.FAILED, name="broken")
    make_job(owner, state=JobState.QUEUED, name="not-done")
    client.force_login(owner)
    page1 = client.get("/completed/")
    ids = [j["id"] for j in page1.context["jobs"]]
    assert ids[0] == failed.id
    assert len(ids) == 25
    assert "not-done" not in page1.text
    page2 = client.get("/completed/?page=2")
    assert [j["id"] for j in page2.context["jobs"]] == [jobs[1].id, jobs[0].id]
    only_failed = client.get("/completed/?state=failed")
    assert [j["id"] for j in only_failed.context["jobs"]] == [failed.id]


def test_completed_pager_counts_up_to_the_cap_and_pages_past_it_newer_and_older(client, owner, monkeypatch):
    """The pager's total is exact up to pages.COUNT_CAP (3 here) and "3+" past it, without a page count;
    Older/Newer still walk every finished job."""
    monkeypatch.setattr(views, "COMPLETED_PER_PAGE", 2)
    jobs = [make_job(owner, state=JobState.SUCCEEDED) for _ in range(5)]
    client.force_login(owner)
    assert "5 jobs · page 1 of 3" in client.get("/completed/").text
    monkeypatch.setattr(pages, "COUNT_CAP", 3)
    first = client.get("/completed/")
    assert "3+ jobs · page 1<" in first.text and "← Newer" not in first.text
    assert 'href="?page=2">Older →' in first.text
    seen, number = [], 1
    while True:
        page = client.get(f"/completed/?page={number}")
        seen += [j["id"] for j in page.context["jobs"]]
        if "Older →" not in page.text:
            break
        number += 1
    assert seen == [j.id for j in reversed(jobs)] and number == 3
    assert f'href="?page={number - 1}">← Newer' in page.text and f"3+ jobs · page {number}<" in page.text
    past_the_end = client.get("/completed/?page=9")
    assert past_the_end.context["page"].number == 1, "the last page is not known without counting every job"


def test_completed_is_searchable_by_name_and_date(client, owner):
    fit = make_job(owner, name="fit-alpha")
    make_job(owner, name="render")
    old = make_job(owner, name="fit-old", submitted_at=timezone.now() - timedelta(days=40))
    client.force_login(owner)
    by_name = client.get("/completed/?name=fit")
    assert {j["id"] for j in by_name.context["jobs"]} == {fit.id, old.id}
    since = (timezone.now() - timedelta(days=7)).date().isoformat()
    recent_fits = client.get(f"/completed/?name=fit&since={since}")
    assert [j["id"] for j in recent_fits.context["jobs"]] == [fit.id]
    bad = client.get("/completed/?since=yesterday")
    assert bad.context["error"].startswith("since='yesterday' is not a date; write it like 2026-11-25")
    assert "is not a date; write it like 2026-11-25" in bad.text


def test_job_page_shows_files_output_and_measurements(client, job):
    Job.objects.filter(id=job.id).update(cpu_seconds=7.5, max_rss_mb=42.0, attempts=2)
    client.force_login(job.owner)
    text = client.get(f"/jobs/{job.id}/").text
    for fact in ("hello from the job", "result.csv", "data.csv", "fit.py", "7.5s", "42 MB", "executable = fit.py"):
        assert fact in text, fact
    assert 'data-testid="exit-code">0<' in text


def test_running_job_page_polls_and_finished_one_does_not(client, owner, node):
    running = make_job(owner, state=JobState.RUNNING, node=node, stdout="step 1\n")
    client.force_login(owner)
    live = client.get(f"/jobs/{running.id}/", headers={"HX-Request": "true"}).text
    assert 'hx-trigger="every 2s"' in live
    assert "step 1" in live
    done = make_job(owner)
    assert "hx-trigger" not in client.get(f"/jobs/{done.id}/").text


def test_downloads_stdout_outputs_and_inputs(client, job):
    client.force_login(job.owner)
    stdout = client.get(f"/jobs/{job.id}/files/stdout")
    assert b"".join(stdout.streaming_content) == b"hello from the job\n"
    output = client.get(f"/jobs/{job.id}/files/outputs/result.csv")
    assert b"".join(output.streaming_content) == b"a,b\n1,2\n"
    assert "attachment" in output["Content-Disposition"]
    data = client.get(f"/jobs/{job.id}/files/inputs/data.csv")
    assert b"".join(data.streaming_content) == b"x"
    assert client.get(f"/jobs/{job.id}/files/submission.txt").content == b"executable = fit.py\n"


def test_downloads_never_leave_the_jobs_folder(client, job, storage):
    (storage / "secret.txt").write_text("secret")
    (job.folder() / "outputs" / "link").symlink_to(storage / "secret.txt")
    client.force_login(job.owner)
    for path in (
        "outputs/../stdout",
        "outputs/../../../secret.txt",
        "outputs/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "outputs/link",
        "outputs/",
        "inputs/../../secret.txt",
        "inputs/other.csv",
        "../secret.txt",
        "nothing",
    ):
        assert client.get(f"/jobs/{job.id}/files/{path}").status_code == 404, path


def test_cancel_hold_and_release_buttons(client, owner):
    job = make_job(owner, state=JobState.QUEUED)
    client.force_login(owner)
    assert client.get(f"/jobs/{job.id}/hold/").status_code == 405
    client.post(f"/jobs/{job.id}/hold/")
    assert Job.objects.get(id=job.id).state == JobState.HELD
    client.post(f"/jobs/{job.id}/release/")
    assert Job.objects.get(id=job.id).state == JobState.QUEUED
    response = client.post(f"/jobs/{job.id}/cancel/", follow=True)
    assert Job.objects.get(id=job.id).state == JobState.CANCELLED
    assert f"Job {job.id} cancelled." in response.text
    again = client.post(f"/jobs/{job.id}/release/", follow=True)
    assert "cannot be released" in again.text
    assert client.post(f"/jobs/{job.id}/explode/").status_code == 404


def test_cancelling_a_running_job_says_its_node_stops_it(client, owner, node):
    job = make_job(owner, state=JobState.RUNNING, node=node)
    client.force_login(owner)
    response = client.post(f"/jobs/{job.id}/cancel/", follow=True)
    assert "cancelled; it is being stopped on node-1" in response.text
    assert Job.objects.get(id=job.id).kill_requested == "cancel"


def test_usage_page_shows_the_fair_share_table_and_chart_data(client, owner, other):
    from django.utils import timezone

    from dctoolkit.accounts.usage import charge_job

    charge_job(other.id, 2, 3600, timezone.now())
    client.force_login(owner)
    response = client.get("/usage/")
    assert [u["user"] for u in response.context["users"]] == ["bob"]
    chart = response.context["chart"]
    assert chart["datasets"] == [{"label": "bob", "data": [0.0] * 29 + [2.0]}]
    assert 'id="usage-data"' in response.text
    # As `usage` writes it (units.format_seconds); 2h00m, or 1h59m once it has decayed a second.
    shown = format_seconds(response.context["users"][0]["usage"])
    assert shown in ("2h00m", "1h59m") and f">{shown}<" in response.text


def test_usage_page_shows_the_accounting_groups_by_priority_with_their_members(client, owner, other):
    from django.utils import timezone

    from dctoolkit.accounts.models import Group, Membership
    from dctoolkit.accounts.usage import charge_job

    bio, chem = Group.objects.create(name="bio", share=3.0), Group.objects.create(name="chem")
    Membership.objects.create(group=bio, user=other)
    Membership.objects.create(group=chem, user=owner)
    charge_job(other.id, 1, 3600, timezone.now(), group_id=bio.id)  # 3600 over share 3: 1200
    charge_job(owner.id, 1, 1800, timezone.now(), group_id=chem.id)  # 1800 over share 1
    client.force_login(owner)
    response = client.get("/usage/")
    assert [(g["group"], g["priority"], g["members"]) for g in response.context["groups"]] == [
        ("bio", 1, ["bob"]),
        ("chem", 2, [owner.username]),
    ]
    assert 'data-testid="group-table"' in response.text and ">bio<" in response.text
    # The chart by group: what the jobs charging each group used today, in CPU hours.
    groups = {d["label"]: d["data"] for d in response.context["chart"]["group_datasets"]}
    assert (groups["bio"][-1], groups["chem"][-1]) == (1.0, 0.5) and 'id="usage-group-chart"' in response.text
    # The users go by their group first: bob (more usage, the group ahead) before the owner.
    assert [u["user"] for u in response.context["users"]] == ["bob", owner.username]


# --- submit -------------------------------------------------------------------------------


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def program_form(**fields) -> dict:
    form = {
        "mode": "program",
        "executable": upload("fit.py", b"print(open('data.csv').read())\n"),
        "data": [upload("data.csv", b"1,2\n")],
        "request_cpus": "1",
        "request_memory": "256MB",
        "request_gpus": "0",
        "copies": "1",
    }
    return {**form, **fields}


def test_submit_page_lists_nodes_with_their_resources(client, owner, node):
    client.force_login(owner)
    text = client.get("/submit/").text
    assert "Any node that fits" in text
    assert "node-1 — 4 slots, 8.0 GB, 1 GPU (available)" in text


def test_submit_program_with_data_file_queues_a_job(client, owner, node):
    client.force_login(owner)
    response = client.post(
        "/submit/", program_form(arguments="--fast 'two words'", email="a@lab.org", node="node-1", max_runtime="10m")
    )
    job = Job.objects.get(owner=owner)
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.id}/"
    assert (job.state, job.executable, job.inputs, job.pinned_node) == ("queued", "fit.py", ["data.csv"], "node-1")
    assert (job.arguments, job.email, job.max_runtime_seconds) == (["--fast", "two words"], "a@lab.org", 600)
    assert (job.submission.folder() / "data.csv").read_bytes() == b"1,2\n"


def test_submit_keeps_a_hash_in_the_name(client, owner):
    client.force_login(owner)
    client.post("/submit/", program_form(name="run #1"))
    assert Job.objects.get(owner=owner).name == "run #1"


def test_submit_copies_queues_n_jobs(client, owner):
    client.force_login(owner)
    response = client.post("/submit/", program_form(copies="3", arguments="$(Process)"))
    assert response["Location"] == reverse("queue")
    assert sorted(Job.objects.values_list("arguments", flat=True)) == [["0"], ["1"], ["2"]]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"executable": ""}, "executable", "Choose the program to run"),
        ({"request_memory": "lots"}, "request_memory", "lots"),
        ({"max_runtime": "forever"}, "max_runtime", "forever"),
        ({"request_cpus": "64"}, "request_cpus", "request_cpus asks for 64 cpus but the largest node has 4"),
        ({"executable": upload("notes.txt", b"hello")}, "executable", "cannot be run"),
        ({"data": [upload("fit.py", b"x")]}, "data", "two files would be staged as 'fit.py'"),
        ({"data": [upload("a,b.csv", b"x")]}, "data", "rename the file"),
        ({"arguments": "'unclosed"}, "arguments", "close every quote"),
        ({"node": "node-9"}, "node", "Select a valid choice"),
        ({"labels": "fastnet"}, "labels", "labels: no node has label 'fastnet'; no node has labels"),
        ({"labels": "ib\nrequest_cpus = 2"}, "labels", "The labels must fit on one line."),
        ({"gpu_type": "A100"}, "gpu_type", "gpu_type: no node has 1 A100 GPU; GPUs on nodes: Tesla T4 15360 MB"),
    ],
)
def test_submit_errors_appear_beside_their_field(client, owner, node, fields, field, message):
    client.force_login(owner)
    response = client.post("/submit/", program_form(**fields))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message in " ".join(errors[field])
    assert f'data-error-for="{field}"' in response.text
    assert not Job.objects.exists()


def test_submit_a_gpu_kind_from_the_form_stores_the_jobs_choice(client, owner, node):
    client.force_login(owner)
    response = client.post("/submit/", program_form(gpu_type="t4"))
    assert response.status_code == 302
    job = Job.objects.get(owner=owner)
    assert (job.request_gpus, job.placement) == (1, {"gpu_type": "t4"})


def test_submit_a_submission_file_with_its_files(client, owner):
    client.force_login(owner)
    text = b"executable = fit.py\ndata = data.csv\nrequest_cpus = 1\nqueue = 2\n"
    files = [upload("fit.py", b"print(1)\n"), upload("data.csv", b"1\n")]
    response = client.post("/submit/", {"mode": "file", "submission": upload("job.txt", text), "files": files})
    assert response.status_code == 302
    assert Job.objects.filter(owner=owner, inputs=["data.csv"]).count() == 2


def test_submission_file_errors_name_file_and_line(client, owner):
    client.force_login(owner)
    bad_key = {"mode": "file", "submission": upload("job.txt", b"executable = fit.py\nexecutabel = x\n")}
    errors = client.post("/submit/", bad_key).context["form"].errors
    assert errors["submission"] == ["job.txt:2: unknown key 'executabel' — did you mean 'executable'?"]
    missing = {"mode": "file", "submission": upload("job.txt", b"executable = fit.py\ndata = d.csv\n")}
    missing["files"] = [upload("fit.py", b"x")]
    errors = client.post("/submit/", missing).context["form"].errors
    assert errors["files"] == ["job.txt:2: file 'd.csv' not found; check the name and that it exists"]
    assert not Job.objects.exists()


def test_an_htcondor_submit_file_runs_from_the_portal_and_every_problem_is_shown(client, owner):
    client.force_login(owner)
    text = (
        b"universe = vanilla\nexecutable = fit.py\narguments = \"$(x) 'two words'\"\noutput = out.$(Process)\n"
        b"log = fit.log\nshould_transfer_files = YES\nrequest_disk = 1GB\nqueue x from items.txt\n"
    )
    files = [upload("fit.py", b"print(1)\n"), upload("items.txt", b"a\nb\nc\n")]
    response = client.post("/submit/", {"mode": "file", "submission": upload("fit.sub", text), "files": files})
    assert response.status_code == 302
    assert sorted(Job.objects.filter(owner=owner).values_list("arguments", flat=True)) == [
        ["a", "two words"],
        ["b", "two words"],
        ["c", "two words"],
    ]
    bad = b"universe = java\nexecutable = fit.py\nrequest_dsk = 1GB\nqueue 2 x\n"
    form = {"mode": "file", "submission": upload("bad.sub", bad), "files": [upload("fit.py", b"x")]}
    assert client.post("/submit/", form).context["form"].errors["submission"] == [
        "bad.sub:1: universe = java is not supported here; use universe = vanilla (the default), "
        "or universe = container",
        "bad.sub:3: unknown key 'request_dsk' — did you mean 'request_disk'?",
        "bad.sub:4: cannot read 'queue 2 x': after the count comes 'VAR in (...)', 'VAR from FILE' "
        "or 'VAR matching GLOB'",
    ]


def test_a_job_holding_gpus_idle_says_so_on_its_page_and_a_busy_one_does_not(client, owner, other, node, settings):
    settings.DCT_BILLING = "cpu=1,gpu=8"
    settings.DCT_GPU_IDLE_PERCENT, settings.DCT_GPU_IDLE_SECONDS = 5.0, 1800.0
    now = timezone.now()
    tally = {"gpu_util_samples": 540, "gpu_idle_since": now - timedelta(minutes=45), "gpu_util_at": now}
    idle = make_job(owner, state=JobState.RUNNING, node=node, request_gpus=2, gpu_indices=[0, 1],
                    gpu_util_total=0.0, gpu_util_recent=0.0, **tally)  # fmt: skip
    busy = make_job(owner, state=JobState.RUNNING, node=node, request_gpus=1, gpu_indices=[2],
                    gpu_util_total=540 * 80.0, gpu_util_recent=80.0, gpu_util_samples=540, gpu_util_at=now)  # fmt: skip
    client.force_login(owner)
    text = client.get(f"/jobs/{idle.id}/").text
    assert (
        f'data-testid="gpu-idle">job {idle.id} holds 2 GPUs at 0% for 45 min; that costs 16 GPU-units an hour<'
    ) in text
    assert 'data-testid="gpu-use">0% over the run · 0% in the last 10 min<' in text
    busy_text = client.get(f"/jobs/{busy.id}/").text
    assert 'data-testid="gpu-idle"' not in busy_text
    assert 'data-testid="gpu-use">80% over the run · 80% in the last 10 min<' in busy_text
    client.force_login(other)
    assert client.get(f"/jobs/{idle.id}/").status_code == 404
