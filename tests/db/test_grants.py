"""Granted folders on the real database: ./dct grant (staff only), the check at submit, whose jobs get what."""

import io
import json
import os

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from dctoolkit.accounts.grant_changes import grant_folder
from dctoolkit.accounts.granting import folders_of
from dctoolkit.accounts.models import Grant
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.intake.queue import FolderFiles, submit
from dctoolkit.jobs.models import Job
from dctoolkit.jobs.scheduling import wake
from dctoolkit.nodes.worker.tasks import granted_paths
from dctoolkit.operations.models import AuditEvent


@pytest.fixture(autouse=True)
def storage(settings, tmp_path, monkeypatch):
    settings.DCT_STORAGE = tmp_path / "storage"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: waking the scheduler is a no-op
    monkeypatch.setattr(wake, "_redis", None)


@pytest.fixture
def users(db):
    make = get_user_model().objects.create_user
    return make("alice"), make("bob"), make("boss", is_staff=True)


@pytest.fixture
def wf(tmp_path):
    folder = tmp_path / "lab" / "alice-wf"
    folder.mkdir(parents=True)
    return folder


def grant(*args: str, user: str = "boss") -> str:
    out = io.StringIO()
    call_command("grant", *args, user=user, stdout=out)
    return out.getvalue()


def submission(tmp_path, text: str):
    folder = tmp_path / "sub"
    folder.mkdir(exist_ok=True)
    (folder / "run.sh").write_text("#!/bin/sh\npwd\n")
    (folder / "run.sh").chmod(0o755)
    return text, FolderFiles(folder)


def test_staff_grant_a_folder_and_list_it(users, wf):
    assert "granted read-write" in grant("alice", str(wf), "--rw")
    listed = json.loads(grant("--list", "alice", "--json"))["grants"]
    assert [(g["user"], g["path"], g["writable"], g["granted_by"]) for g in listed] == [
        ("alice", os.path.realpath(wf), True, "boss")
    ]
    assert grant("--list", "bob") == "no folders granted to bob\n"
    assert "now read-only" in grant("alice", str(wf))  # granted again: its mode changes, no second row
    assert Grant.objects.filter(user__username="alice").count() == 1


def test_a_user_who_is_not_staff_cannot_grant_revoke_or_list(users, wf):
    for args in (("bob", str(wf), "--rw"), ("--revoke", "alice", str(wf)), ("--list",)):
        with pytest.raises(CommandError, match="granting folders is for staff, and alice is not staff"):
            grant(*args, user="alice")
    assert not Grant.objects.exists()


def test_grant_refuses_a_bad_folder_and_an_unknown_user_naming_them(users, tmp_path, settings):
    with pytest.raises(CommandError, match=r"nope: no such folder on this machine"):
        grant("alice", str(tmp_path / "nope"))
    with pytest.raises(CommandError, match=r"'\.\.' is not allowed"):
        grant("alice", f"{tmp_path}/lab/../lab")
    with pytest.raises(CommandError, match="no user 'carol'"):
        grant("carol", str(tmp_path))
    settings.DCT_STORAGE.mkdir(parents=True)
    with pytest.raises(CommandError, match="which no job may see"):
        grant("alice", str(settings.DCT_STORAGE))
    assert not Grant.objects.exists()


def test_revoke_takes_the_grant_back_and_says_when_there_was_none(users, wf):
    grant("alice", str(wf))
    assert "revoked" in grant("--revoke", "alice", str(wf))
    assert folders_of(users[0].pk) == ()
    with pytest.raises(CommandError, match=f"alice has no grant of {wf}"):
        grant("--revoke", "alice", str(wf))


def test_a_job_may_start_only_in_a_folder_granted_to_its_owner(users, wf, tmp_path):
    alice, bob, boss = users
    grant_folder(alice, str(wf), writable=True, by=boss)
    inside = wf / "run1"
    inside.mkdir()
    text, files = submission(tmp_path, f"executable = run.sh\ninitialdir = {inside}\n")
    (job,) = submit(text, "job.sub", alice, files)
    assert job.owner == alice
    with pytest.raises(SubmissionError) as refused:
        submit(text, "job.sub", bob, files)
    assert str(refused.value) == (
        f"job.sub:2: {inside} is not a folder granted to bob; a job may run only in a folder staff granted "
        "(./dct grant bob FOLDER), or in its own folder (leave initialdir out)"
    )
    assert Job.objects.filter(owner=bob).count() == 0


def test_a_path_that_only_looks_like_a_granted_one_is_refused(users, wf, tmp_path):
    alice, _, boss = users
    grant_folder(alice, str(wf), writable=False, by=boss)
    sibling = f"{wf}2"
    text, files = submission(tmp_path, f"executable = run.sh\ninitialdir = {sibling}\n")
    with pytest.raises(SubmissionError) as refused:
        submit(text, "job.sub", alice, files)
    assert str(refused.value).startswith(f"job.sub:2: {sibling} is not a folder granted to alice")
    assert str(refused.value).endswith(f"; folders granted to alice: {os.path.realpath(wf)}")


def test_submit_chdir_names_the_option_when_refused(users, wf, tmp_path):
    script = tmp_path / "go.sh"
    script.write_text("#!/bin/sh\npwd\n")
    script.chmod(0o755)
    with pytest.raises(CommandError) as refused:
        call_command("submit", "--script", str(script), "--chdir", str(wf), user="alice", stdout=io.StringIO())
    assert str(refused.value).startswith(f"--chdir {wf}: {wf} is not a folder granted to alice")


def test_the_node_binds_only_the_owners_grants_read_as_the_job_starts(users, wf, tmp_path):
    alice, bob, boss = users
    other = tmp_path / "bob-data"
    other.mkdir()
    grant_folder(alice, str(wf), writable=True, by=boss)
    grant_folder(bob, str(other), writable=False, by=boss)
    real = os.path.realpath
    assert [(g.path, g.writable) for g in granted_paths(alice.pk, ())] == [(real(wf), True)]
    assert [(g.path, g.writable) for g in granted_paths(bob.pk, ())] == [(real(other), False)]
    assert granted_paths(boss.pk, ()) == ()
    Grant.objects.filter(user=alice).delete()  # revoked: the next job of alice's to start gets nothing
    assert granted_paths(alice.pk, ()) == ()


def test_the_node_leaves_out_a_grant_that_became_a_link_or_lies_in_a_hidden_folder(users, wf, tmp_path):
    alice, _, boss = users
    grant_folder(alice, str(wf), writable=True, by=boss)
    elsewhere = tmp_path / "secret"
    elsewhere.mkdir()
    wf.rmdir()
    wf.symlink_to(elsewhere)  # the user who owns lab/ swapped the granted folder for a link
    assert granted_paths(alice.pk, ()) == ()
    Grant.objects.create(user=alice, path=str(tmp_path), writable=True)  # written past the checks
    assert granted_paths(alice.pk, (os.path.realpath(tmp_path),)) == ()
    assert len(folders_of(alice.pk)) == 2  # the rows are there; the node left both out


def test_the_admin_form_checks_the_folder_and_records_who_granted(users, wf, client):
    alice, _, boss = users
    boss.is_superuser = True
    boss.save()
    client.force_login(boss)
    bad = client.post("/admin/accounts/grant/add/", {"user": alice.pk, "path": f"{wf}/../x", "writable": "on"})
    assert bad.status_code == 200 and "is not allowed in the path" in bad.content.decode()
    done = client.post("/admin/accounts/grant/add/", {"user": alice.pk, "path": f"{wf}/", "writable": "on"})
    assert done.status_code == 302, done.content.decode()[:500]
    (row,) = Grant.objects.all()
    assert (row.user, row.path, row.writable, row.granted_by) == (alice, os.path.realpath(wf), True, boss)


def test_grants_changes_and_revokes_are_in_the_audit_trail_and_an_unchanged_grant_is_not(users, wf):
    grant("alice", str(wf))
    grant("alice", str(wf))  # the same again: nothing changed, nothing recorded
    grant("alice", str(wf), "--rw")
    grant("--revoke", "alice", str(wf))
    events = list(AuditEvent.objects.order_by("id").values_list("actor_name", "action", "target", "details"))
    path = str(wf.resolve())
    assert events == [
        ("boss", "grant", "alice", {"path": path, "writable": False}),
        ("boss", "grant", "alice", {"path": path, "writable": True, "before": {"writable": False}}),
        ("boss", "revoke", "alice", {"path": str(wf)}),
    ]
