"""Granted folders through the API: the same check at submit as the command line's, per owner."""

from dctoolkit.accounts.grant_changes import grant_folder
from dctoolkit.jobs.models import Job
from tests.api.conftest import submit

HELLO = "print('hello')\n"


def test_a_job_may_start_only_in_a_folder_granted_to_the_caller(users, alice, bob, tmp_path):
    folder = tmp_path / "alice-wf"
    folder.mkdir()
    grant_folder(users["alice"], str(folder), writable=True, by=users["root"])
    text = f"executable = hello.py\ninitialdir = {folder}\n"
    accepted = submit(alice, text, {"hello.py": HELLO})
    assert accepted.status_code == 201, accepted.content
    refused = submit(bob, text, {"hello.py": HELLO})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith(f"job.txt:2: {folder} is not a folder granted to bob")
    assert list(Job.objects.values_list("owner__username", flat=True)) == ["alice"]
