"""The portal's "Submit again" (a job's page), "Run the failed ones again" (a batch's page) and a
waiting, queued or held job's "Edit" form; the rules are `dctoolkit.jobs.intake.again`'s."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from dctoolkit.jobs.intake.again import AgainError, edit_jobs, resubmit_jobs, resubmit_submission
from dctoolkit.jobs.web.batches import visible_submission
from dctoolkit.jobs.web.forms import EDIT_FIELDS, current_values, edit_form
from dctoolkit.jobs.web.views import job_page, submitted_message, user_job


@login_required
@require_POST
def job_resubmit(request: HttpRequest, job_id: int) -> HttpResponse:
    job = user_job(request, job_id)
    try:
        jobs = resubmit_jobs([job], actor=request.user)
    except AgainError as exc:
        messages.error(request, str(exc))
        return redirect("job-detail", job_id=job.id)
    messages.success(request, submitted_message(jobs))
    return redirect("job-detail", job_id=jobs[0].id) if jobs else redirect("job-detail", job_id=job.id)


@login_required
@require_POST
def batch_resubmit_failed(request: HttpRequest, submission_id: int) -> HttpResponse:
    submission = visible_submission(request, submission_id)
    try:
        jobs = resubmit_submission(submission, failed=True, actor=request.user)
    except AgainError as exc:
        messages.error(request, str(exc))
        return redirect("batch-detail", submission_id=submission.id)
    messages.success(request, submitted_message(jobs))
    return redirect("batch-detail", submission_id=jobs[0].submission_id)


@login_required
@require_POST
def job_edit(request: HttpRequest, job_id: int) -> HttpResponse:
    job = user_job(request, job_id)
    before = current_values(job)
    # Only what the person changed: an untouched field is not checked again (nor rewritten).
    pairs = {
        key: request.POST[key].strip()
        for key, _ in EDIT_FIELDS
        if key in request.POST and request.POST[key].strip() != before[key]
    }
    if not pairs:
        messages.info(request, f"Job {job.id}: nothing changed.")
        return redirect("job-detail", job_id=job.id)
    try:
        _, failures = edit_jobs([job], pairs, actor=request.user)
    except AgainError as exc:
        if not exc.fields:  # no field's own fault (no node could run it so): said above the form
            messages.error(request, f"Job {job.id} not changed: {exc}")
            return redirect("job-detail", job_id=job.id)
        # Each problem at its field, the values as posted (to fix, not to type again); nothing changed.
        messages.error(request, f"Job {job.id} not changed: fix the fields marked below.")
        posted = {key: request.POST[key].strip() for key, _ in EDIT_FIELDS if key in request.POST}
        return job_page(request, job, edit_form(job, posted, exc.fields))
    if failures:
        messages.warning(request, failures[job.id])
    else:
        messages.success(request, f"Job {job.id} changed: {', '.join(sorted(pairs))}.")
    return redirect("job-detail", job_id=job.id)
