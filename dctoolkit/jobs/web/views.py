"""Portal pages about jobs: home, queue, completed, a job's page with its files, and submit.

Every page needs a login.  A user sees only their own jobs (another's job is
404, as in the API); staff see everyone's.  Pages with live parts answer an
htmx request (header HX-Request) with just that part, which the page polls.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from dctoolkit.jobs.intake.dag import is_dag
from dctoolkit.jobs.intake.dagqueue import prepare_dag
from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.intake.queue import UploadedFiles, prepare, queue
from dctoolkit.jobs.models import ACTIVE_STATES, FINAL_STATES, Job, JobState
from dctoolkit.jobs.scheduling.dagman import submit_dag
from dctoolkit.jobs.scheduling.waiting import queue_order, waiting_page
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.selection import act_on_job
from dctoolkit.jobs.transitions import CONTROLS, HOLDABLE
from dctoolkit.jobs.web.forms import SubmitForm, edit_form
from dctoolkit.jobs.web.history import FilterError, filter_jobs, state_counts
from dctoolkit.jobs.web.outputs import job_outputs
from dctoolkit.jobs.web.serializers import jobs_payload, nodes_payload
from dctoolkit.lib.ids import MAX_ID, bounded_int
from dctoolkit.lib.pages import portal_page
from dctoolkit.lib.ranges import open_plain, ranged_file

COMPLETED_PER_PAGE = 25
# Running jobs the queue page lists (a cluster runs at most its slots at once; this bounds a bad day).
MAX_RUNNING_SHOWN = 500
RECENT_JOBS = 10
# How much of stdout/stderr a page shows: the tail, so a chatty job stays readable.
TAIL_BYTES = 64 * 1024


def visible_jobs(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Job]:
    """The jobs `user` may see (Job.objects.visible_to), with what the pages show of them."""
    return Job.objects.visible_to(user).select_related("owner", "node", "submission")


def user_job(request: HttpRequest, job_id: int) -> Job:
    """The job if the viewer may see it, else 404 (never 403: another's job does not exist for you)."""
    job = visible_jobs(request.user).filter(id=job_id).first()
    if job is None:
        raise Http404("no such job")
    return job


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def cluster_summary(nodes: list[dict]) -> dict:
    """Cluster at a glance: nodes up, slots busy, queue length."""
    up = [n for n in nodes if n["state"] != "offline"]
    slots = sum(n["slots"] for n in up)
    return {
        "nodes_up": len(up),
        "nodes_total": len(nodes),
        "slots_total": slots,
        "slots_busy": slots - sum(n["free_cpus"] for n in up),
        "queued": Job.objects.filter(state=JobState.QUEUED).count(),
        "running": Job.objects.filter(state__in=ACTIVE_STATES).count(),
    }


@login_required
def home(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    # mypy: login_required: request.user is a User.
    mine = Job.objects.select_related("owner", "node").filter(owner=request.user).order_by("-id")  # type: ignore[misc]
    context = {
        "jobs": jobs_payload(list(mine[:RECENT_JOBS]), now),
        "summary": cluster_summary(nodes_payload(now)),
        "counts": state_counts(request.user.id),  # type: ignore[arg-type]
    }
    template = "partials/home_live.html" if is_htmx(request) else "home.html"
    return render(request, template, context)


@login_required
def queue_page(request: HttpRequest) -> HttpResponse:
    """Running jobs, and the waiting ones 50 a page in fair-share order (# = place in the whole queue).

    Polled every 3 s, so it reads only as deep into the queue as the page is (see `waiting`).
    """
    now = timezone.now()
    jobs = Job.objects.visible_to(request.user).select_related("owner", "node")
    active = jobs.filter(state__in=ACTIVE_STATES).order_by("started_at", "id")
    running = jobs_payload(active[:MAX_RUNNING_SHOWN], now)
    order = queue_order(now)
    number = bounded_int(request.GET.get("page") or "1", 1, MAX_ID) or 1
    page = waiting_page(jobs, order, None if request.user.is_staff else request.user.id, number)
    waiting = jobs_payload(page.jobs, now, order)
    for job in waiting:
        job["position"] = page.positions.get(job["id"])
    context = {
        "running": running,
        "running_count": active.count() if len(running) == MAX_RUNNING_SHOWN else len(running),
        "waiting": waiting,
        "page": page,
        "queue_length": order.total,
    }
    template = "partials/queue_live.html" if is_htmx(request) else "queue.html"
    return render(request, template, context)


@login_required
def completed(request: HttpRequest) -> HttpResponse:
    """Finished jobs, newest first, searchable by state, name and submission date."""
    search = {k: request.GET.get(k, "").strip() for k in ("state", "name", "since", "until")}
    if search["state"] not in FINAL_STATES:
        search["state"] = ""
    # Newest first by id: the (owner, -id) index serves it, even with years of history.
    jobs = visible_jobs(request.user).filter(state__in=FINAL_STATES).order_by("-id")
    error = ""
    try:
        jobs = filter_jobs(jobs, search)
    except FilterError as exc:
        error = str(exc)
    # 26 rows read and a count capped at 10,000: the pager says "10,000+ jobs" rather than count a long history.
    page = portal_page(jobs, request.GET.get("page"), COMPLETED_PER_PAGE)
    context = {
        "page": page,
        "jobs": jobs_payload(page.object_list, timezone.now()),
        "state": search["state"],
        "search": search,
        "query": urlencode({k: v for k, v in search.items() if v}),
        "error": error,
        "states": [s.value for s in FINAL_STATES],
    }
    return render(request, "completed.html", context)


def read_tail(path: Path) -> tuple[str, bool]:
    """The last TAIL_BYTES of a text file (a link or a FIFO reads as empty), and whether anything was cut off."""
    fd = open_plain(path)
    if fd is None:
        return "", False
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        f.seek(max(0, size - TAIL_BYTES))
        data = f.read(TAIL_BYTES)
    return data.decode(errors="replace"), size > TAIL_BYTES


def output_files(job: Job) -> list[dict]:
    """The job's collected output files: path (relative to outputs/) and size; names that are not
    UTF-8 are left out (a page cannot show them, nor a link name them)."""
    return job_outputs(job).files


def submitted_files(job: Job) -> list[dict]:
    """The executable and data files the job was submitted with (kept in its submission's folder)."""
    folder = job.submission.folder()
    names = [job.executable, *job.inputs]
    return [
        {"name": name, "role": "executable" if i == 0 else "data", "size": _size(folder / name)}
        for i, name in enumerate(names)
    ]


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def job_context(job: Job) -> dict:
    data = jobs_payload([job], timezone.now())[0]
    stdout, stdout_cut = read_tail(job.folder() / "stdout")
    stderr, stderr_cut = read_tail(job.folder() / "stderr")
    return {
        "job": data,
        "live": job.state not in FINAL_STATES,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_cut": stdout_cut,
        "stderr_cut": stderr_cut,
        "outputs": output_files(job),
        "can": {
            "cancel": job.state not in FINAL_STATES,
            "hold": job.state in HOLDABLE,
            "release": job.state == JobState.HELD,
        },
    }


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = user_job(request, job_id)
    if is_htmx(request):
        return render(request, "partials/job_live.html", job_context(job))
    return job_page(request, job, edit_form(job))


def job_page(request: HttpRequest, job: Job, edit_fields: list[dict] | None) -> HttpResponse:
    """A job's page, with its Edit form's `edit_fields` (`forms.edit_form`: after a refused edit, the values
    posted and the errors at their fields)."""
    context = job_context(job)
    context["files"] = submitted_files(job)
    # The start only: a submission stored before the 1 MB limit may be far bigger.
    context["submission_text"] = job.submission.text[:TAIL_BYTES]
    context["submission_cut"] = len(job.submission.text) > TAIL_BYTES
    context["edit_fields"] = edit_fields
    return render(request, "job_detail.html", context)


def job_file_path(job: Job, path: str) -> Path | None:
    """Where a downloadable file of the job lies, or None when `path` names nothing it may serve.

    stdout, stderr, outputs/<path> (inside the job's outputs folder, no
    symlinks, no escape) and inputs/<name> (a file the job was submitted with).
    """
    folder = job.folder()
    if path in ("stdout", "stderr"):
        return folder / path
    if path.startswith("outputs/"):
        root = (folder / "outputs").resolve()
        target = (root / path.removeprefix("outputs/")).resolve()
        if not target.is_relative_to(root) or target == root:
            return None
        return target
    if path.startswith("inputs/"):
        name = path.removeprefix("inputs/")
        if name in (job.executable, *job.inputs):
            return job.submission.folder() / name
    return None


@login_required
def job_file(request: HttpRequest, job_id: int, path: str) -> HttpResponse:
    job = user_job(request, job_id)
    if path == "submission.txt":
        response = HttpResponse(job.submission.text, content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{Path(job.submission.source_name).name}"'
        return response
    target = job_file_path(job, path)
    fd = open_plain(target) if target is not None else None
    if fd is None:
        raise Http404("no such file")
    # mypy: target is not None here: fd is None when it is, and that raised Http404 above.
    download_name = f"job{job.id}-{target.name}" if path in ("stdout", "stderr") else target.name  # type: ignore[union-attr]
    # mypy: target is not None here: fd is None when it is, and that raised Http404 above.
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"  # type: ignore[union-attr]
    response = ranged_file(fd, request.headers.get("Range"), content_type=kind)
    # mypy: content_disposition_header() returns None only for as_attachment=False without a file name.
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=download_name)  # type: ignore[assignment]
    return response


@login_required
@require_POST
def job_action(request: HttpRequest, job_id: int, action: str) -> HttpResponse:
    job = user_job(request, job_id)
    if action not in CONTROLS:
        raise Http404("no such action")
    done = act_on_job(action, job, actor=request.user)
    job.refresh_from_db()
    word = {"cancel": "cancelled", "hold": "held", "release": "released"}[action]
    if not done:
        messages.warning(request, f"Job {job.id} is {job.state}; it cannot be {word} now.")
    elif job.kill_requested:
        # A running job is stopped by its node, which notices within a couple of seconds.
        messages.info(request, f"Job {job.id} {word}; it is being stopped on {job.node}.")
    else:
        wake_scheduler()
        messages.success(request, f"Job {job.id} {word}.")
    return redirect("job-detail", job_id=job.id)


@login_required
def submit_page(request: HttpRequest) -> HttpResponse:
    nodes = nodes_payload(timezone.now())
    form = SubmitForm(request.POST or None, request.FILES or None, nodes=nodes)
    if request.method == "POST" and form.is_valid():
        jobs = submit_form(form, request.user)
        if jobs and jobs[0].dag_id:  # a DAG file: its page shows its nodes as they run
            messages.success(request, f"DAG {jobs[0].dag_id} submitted.")
            return HttpResponseRedirect(reverse("dag-detail", args=[jobs[0].dag_id]))
        if jobs:
            messages.success(request, submitted_message(jobs))
            target = reverse("job-detail", args=[jobs[0].id]) if len(jobs) == 1 else reverse("queue")
            return HttpResponseRedirect(target)
    return render(request, "submit.html", {"form": form, "nodes": nodes})


def submit_form(form: SubmitForm, owner) -> list[Job]:
    """Queue what a valid form describes, through the command line's own checks; on a
    SubmissionError put it beside its field and return no jobs."""
    fields: dict[int, str]
    if form.cleaned_data["mode"] == "file":
        upload = form.cleaned_data["submission"]
        try:
            text = upload.read().decode()
        except UnicodeDecodeError:
            form.add_error("submission", "The submission file is not text; upload the key = value file.")
            return []
        source, fields = Path(upload.name).name, {}
    else:
        text, source, fields = form.submission_text()
    try:
        # mypy: an UploadedFile reads like a binary file, which is all UploadedFiles asks of it.
        files = UploadedFiles(form.uploads())  # type: ignore[arg-type]
        if is_dag(text):  # a DAG file: its first nodes' jobs (each carries the DAG's id)
            return submit_dag(prepare_dag(text, source, files), owner, timezone.now())[1]
        return queue(prepare(text, source, files), owner)
    except SubmissionError as error:
        form.add_submission_error(error, fields)
        return []


def submitted_message(jobs: list[Job]) -> str:
    if len(jobs) == 1:
        return f"Job {jobs[0].id} submitted."
    return f"{len(jobs)} jobs submitted: {jobs[0].id} to {jobs[-1].id}."


@login_required
def flower(request: HttpRequest) -> HttpResponse:
    """Staff only: to Flower (Celery's own monitor), which runs beside the portal."""
    if not request.user.is_staff:
        raise Http404("no such page")
    return HttpResponseRedirect(settings.DCT_FLOWER_URL)
