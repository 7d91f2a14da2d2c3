"""Portal pages (the first, minimal version: home and a job's page)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from .models import Job
from .serializers import jobs_payload, nodes_payload


def visible_jobs(user):
    jobs = Job.objects.select_related("owner", "node")
    return jobs if user.is_staff else jobs.filter(owner=user)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    jobs = jobs_payload(list(visible_jobs(request.user).order_by("-id")[:20]), now)
    return render(request, "home.html", {"jobs": jobs, "nodes": nodes_payload(now)})


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = visible_jobs(request.user).filter(id=job_id).first()
    if job is None:
        raise Http404("no such job")
    data = jobs_payload([job], timezone.now())[0]
    texts = {}
    for name in ("stdout", "stderr"):
        path = job.folder() / name
        texts[name] = path.read_text(errors="replace")[-100_000:] if path.is_file() else ""
    return render(request, "job_detail.html", {"job": data, **texts})
