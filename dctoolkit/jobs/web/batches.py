"""A batch's page in the portal: one submission's jobs counted per state, and cancel / hold / release for all."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from dctoolkit.jobs.models import FINAL_STATES, JobState, Submission
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.selection import Selection, act_on_selection, jobs_to_act_on
from dctoolkit.jobs.transitions import CONTROLS, HOLDABLE

# What each action can change: its button shows only while some job of the batch is in one of these.
ACTS_ON = {
    "cancel": [s for s in JobState if s not in FINAL_STATES],
    "hold": list(HOLDABLE),
    "release": [JobState.HELD],
}


def visible_submission(request: HttpRequest, submission_id: int) -> Submission:
    """The submission if the viewer may see it (their own; staff: any), else 404."""
    found = Submission.objects.filter(id=submission_id)
    # mypy: login_required: request.user is a User.
    if not request.user.is_staff:
        found = found.filter(owner=request.user)  # type: ignore[misc]
    submission = found.first()
    if submission is None:
        raise Http404("no such batch")
    return submission


@login_required
def batch_page(request: HttpRequest, submission_id: int) -> HttpResponse:
    submission = visible_submission(request, submission_id)
    rows = submission.jobs.values_list("state").annotate(n=Count("id")).order_by()
    counts = {state: n for state, n in rows}
    context = {
        "submission": submission,
        "counts": [(s.value, counts.get(s.value, 0)) for s in JobState],
        "total": sum(counts.values()),
        "actions": [verb for verb, states in ACTS_ON.items() if any(counts.get(s.value) for s in states)],
        "failed": counts.get(JobState.FAILED.value, 0),
        "first_jobs": submission.jobs.order_by("id").values_list("id", "name", "state")[:20],
    }
    return render(request, "batch.html", context)


@login_required
@require_POST
def batch_action(request: HttpRequest, submission_id: int, action: str) -> HttpResponse:
    submission = visible_submission(request, submission_id)
    if action not in CONTROLS:
        raise Http404("no such action")
    selection = Selection(submission=submission.id)
    # Staff act on anyone's batch, as on anyone's job: the selection is by number.
    jobs = jobs_to_act_on(request.user, selection)
    changed = len(act_on_selection(action, jobs, selection, timezone.now(), actor=request.user))
    wake_scheduler()
    word = {"cancel": "cancelled", "hold": "held", "release": "released"}[action]
    messages.success(request, f"{changed} job{'' if changed == 1 else 's'} of batch {submission.id} {word}.")
    return redirect("batch-detail", submission_id=submission.id)
