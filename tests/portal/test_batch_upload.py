"""A Slurm script uploaded on the portal's submit page: the same intake as the command line and the API."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from dctoolkit.jobs import streams
from dctoolkit.jobs.models import Job

pytestmark = pytest.mark.django_db

SCRIPT = b"#!/bin/bash\n#SBATCH -J sweep\n#SBATCH --array=0-2\n#SBATCH -o out_%a_%j.txt\n#SBATCH -c 2\nsrun ./fit\n"


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def test_a_slurm_array_script_uploaded_alone_queues_one_job_per_index(client, owner):
    client.force_login(owner)
    response = client.post("/submit/", {"mode": "file", "submission": upload("sweep.sh", SCRIPT)})
    assert response.status_code == 302
    jobs = list(Job.objects.filter(owner=owner).order_by("id"))
    assert [(j.name, j.request_cpus, j.environment["SLURM_ARRAY_TASK_ID"]) for j in jobs] == [
        ("sweep", 2, "0"),
        ("sweep", 2, "1"),
        ("sweep", 2, "2"),
    ]
    folder = jobs[0].submission.folder()
    assert (folder / "sweep.sh").read_bytes() == SCRIPT, "the script is the executable, staged as uploaded"
    assert (folder / ".dct_srun.sh").exists()
    # %j is the job's own id, known once the rows exist.
    assert [streams.of(j).stdout for j in jobs] == [f"out_{j.process}_{j.id}.txt" for j in jobs]


def test_a_bad_script_shows_every_problem_beside_the_file(client, owner):
    client.force_login(owner)
    bad = b"#!/bin/sh\n#SBATCH --nodes=3\n#SBATCH --mem=lots\necho\n"
    errors = client.post("/submit/", {"mode": "file", "submission": upload("bad.sh", bad)}).context["form"].errors
    assert errors["submission"] == [
        "bad.sh:2: --nodes=3: a job runs on one node here (no multi-node jobs)",
        "bad.sh:3: 'lots' is not a size; write it like 4G, 500M or 500 (MB)",
    ]
    assert not Job.objects.exists()


HELLO_PY = b"print('hello')\n"
CONDOR = b"executable = hello.py\ntransfer_input_files = data/\nqueue\n"


def test_a_chosen_folder_goes_with_its_paths_so_a_dir_input_finds_its_files(client, owner):
    # What portal.js sends for the folder "proj" holding hello.py and data/a.csv: the browser's relative paths.
    client.force_login(owner)
    folder = [upload("hello.py", HELLO_PY), upload("a.csv", b"1,2\n")]
    post = {"mode": "file", "submission": upload("job.sub", CONDOR), "folder": folder,
            "folder_paths": ["proj/hello.py", "proj/data/a.csv"]}  # fmt: skip
    response = client.post("/submit/", post)
    assert response.status_code == 302, response.context["form"].errors
    (job,) = Job.objects.filter(owner=owner)
    assert job.inputs == ["a.csv"]
    assert (job.submission.folder() / "a.csv").read_bytes() == b"1,2\n"


def test_a_folder_without_its_paths_says_the_page_script_sends_them(client, owner):
    client.force_login(owner)
    post = {"mode": "file", "submission": upload("job.sub", CONDOR), "folder": [upload("hello.py", HELLO_PY)]}
    errors = client.post("/submit/", post).context["form"].errors
    assert errors["folder"] == [
        "the folder's files came without their paths (the page's script sends them): allow this page's "
        "JavaScript, or choose the files one by one above."
    ]
    assert not Job.objects.exists()


def test_a_folder_path_climbing_out_is_a_form_error(client, owner):
    client.force_login(owner)
    post = {"mode": "file", "submission": upload("job.sub", CONDOR), "folder": [upload("hello.py", HELLO_PY)],
            "folder_paths": ["proj/../../hello.py"]}  # fmt: skip
    errors = client.post("/submit/", post).context["form"].errors
    assert "a path may not hold an empty part, '.' or '..'" in errors["folder"][0]
    assert not Job.objects.exists()
