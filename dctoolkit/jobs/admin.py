"""The staff's view of jobs: every change of a job's state goes through `transitions`, as the CLI's does.

Every field is read-only here.  The ones the scheduler and the nodes own
(state, node, attempts, GPUs, the times and the results): a state written by
hand would skip the conditional updates that keep a node, the scheduler and a
user from racing (transitions.py), and leave a node running a job the
database calls queued.  The request (cpus, memory, GPUs, environment, ...):
the scheduler counts a node's free capacity from its jobs' requests, and the
parser's checks (intake/parse.py) would be skipped; a different job is a new
submission.  Cancel, hold and release are admin actions calling the same
functions as `./dct cancel|hold|release` and the API.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from dctoolkit.jobs.models import Job
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.selection import act_on_job
from dctoolkit.jobs.transitions import CONTROLS


def control_jobs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Job], verb: str) -> None:
    """Apply CONTROLS[verb] to each selected job; say how many changed and why the others did not."""
    control = CONTROLS[verb]
    jobs = list(queryset.order_by("id"))
    refused = [job for job in jobs if not act_on_job(verb, job, actor=request.user)]
    changed = len(jobs) - len(refused)
    if changed:
        wake_scheduler()  # a released job, or a freed slot, should not wait for the next pass
        modeladmin.message_user(request, f"{changed} of {len(jobs)} jobs: {control.done}.", messages.SUCCESS)
    if refused:
        states = {job.id: Job.objects.filter(id=job.id).values_list("state", flat=True).first() for job in refused}
        listed = ", ".join(f"job {job_id} is {state}" for job_id, state in states.items())
        modeladmin.message_user(
            request, f"{len(refused)} of {len(jobs)} jobs unchanged ({listed}): {control.refusal}.", messages.WARNING
        )


@admin.action(permissions=["change"], description="Cancel the selected jobs (a running one is killed)")
def cancel_jobs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Job]) -> None:
    control_jobs(modeladmin, request, queryset, "cancel")


@admin.action(
    permissions=["change"], description="Hold the selected jobs (a running one is stopped and comes back held)"
)
def hold_jobs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Job]) -> None:
    control_jobs(modeladmin, request, queryset, "hold")


@admin.action(permissions=["change"], description="Release the selected held jobs")
def release_jobs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Job]) -> None:
    control_jobs(modeladmin, request, queryset, "release")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "state", "node", "attempts", "exit_code", "submitted_at")
    list_filter = ("state",)
    search_fields = ("name", "owner__username")
    raw_id_fields = ("submission", "owner", "node")
    actions = (cancel_jobs, hold_jobs, release_jobs)

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        return [field.name for field in Job._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A job comes from a submission (intake stages its files and checks it); none is made by hand.
        return False
