"""The jobs `queue()` writes with one executemany (intake/rows.py) are, field by field, what `bulk_create`
of each spec's `Job(submission=..., **queue._spec_values(...))` (the path it replaced) stores and returns:
the rows the database keeps and the instances the caller gets back, for a plain `queue N` (its copied rows)
and for jobs that differ."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from dctoolkit.jobs.intake import queue as intake
from dctoolkit.jobs.models import Job, JobState, Submission

PLAIN = "executable = a.sh\nhold = true\nqueue 4\n"
VARYING = f"""\
executable = a.sh
arguments = "-n $(Process) fixed"
environment = "A=1 B=$(Process)"
+Tag = "t_$(Process)"
output = out.$(Process)
error = err.txt
request_memory = 512
request_cpus = 2
transfer_output_files = r.txt
max_retries = 2
priority = 3
on_exit_hold = ExitCode == 3
periodic_release = NumJobStarts < 3
max_running = 2
deferral_time = {int(time.time()) + 3600}
queue 3
"""


def fields_of(job: Job) -> dict:
    """Every column but the row's own id and its submission's."""
    return {
        f.attname: getattr(job, f.attname)
        for f in Job._meta.concrete_fields
        if f.attname not in ("id", "submission_id")
    }


def columns(sub: Submission) -> list[dict]:
    return [fields_of(job) for job in Job.objects.filter(submission=sub).order_by("process")]


def reference(prepared: intake.Prepared, owner, like: Job) -> tuple[Submission, list[Job]]:
    """The previous path: one Job(...) per spec, given to bulk_create, with the same time stamp as `like`."""
    stored = intake._storage_names(prepared.refs)
    charged = intake.check_groups(prepared.submission, owner)
    with transaction.atomic():
        sub = Submission.objects.create(owner=owner, source_name="ref.sub", text="", job_count=1)
        rows = [
            Job(
                submission=sub,
                **intake._spec_values(
                    spec, owner, stored, like.submitted_at, [], JobState.QUEUED, charged[spec.accounting_group]
                ),
            )
            for spec in prepared.submission.jobs
        ]
        made = Job.objects.bulk_create(rows)
    return sub, made


@pytest.mark.parametrize("text", [PLAIN, VARYING], ids=["plain", "varying"])
def test_bulk_rows_are_the_rows_bulk_create_made_field_by_field(text, alice, folder, no_scheduler):
    prepared = intake.prepare(text, "a.sub", intake.FolderFiles(folder))
    jobs = intake.queue(prepared, alice)
    sub, made = reference(prepared, alice, jobs[0])
    assert len(jobs) == len(made) > 1
    assert columns(jobs[0].submission) == columns(sub)
    assert [fields_of(j) for j in jobs] == [fields_of(j) for j in made]
    assert [j.pk for j in jobs] == list(
        Job.objects.filter(submission=jobs[0].submission).order_by("id").values_list("id", flat=True)
    )
    assert all(not j._state.adding and j.submission is jobs[0].submission and j.owner == alice for j in jobs)
    # Each job has its own copy of what bulk_create's rows had their own of.
    assert len({id(j.arguments) for j in jobs}) == len({id(j.placement) for j in jobs}) == len(jobs)


def test_bulk_rows_of_a_varying_batch_differ_where_the_spec_does(alice, folder, no_scheduler):
    jobs = intake.queue(intake.prepare(VARYING, "a.sub", intake.FolderFiles(folder)), alice)
    stored = Job.objects.filter(submission=jobs[0].submission).order_by("process")
    assert [(j.process, j.arguments, j.environment["B"], j.attributes["Tag"]) for j in stored] == [
        (p, ["-n", str(p), "fixed"], str(p), f'"t_{p}"') for p in range(3)
    ]
    assert {(j.state, j.max_running, j.start_after > j.submitted_at, j.periodic_policy) for j in stored} == {
        ("waiting", 2, True, True)
    }
