"""Email when a job ends: sent by the scheduler, off the job's critical path, retried until it goes."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail

from .models import FINAL_STATES, Job
from .units import format_mb, format_seconds

log = logging.getLogger(__name__)

# Mail per scheduler round at most; the rest go next round.
BATCH = 50


def send_due(now: datetime) -> int:
    """Send the mail of ended jobs that asked for one; returns how many went."""
    due = Job.objects.filter(state__in=FINAL_STATES, notified=False).exclude(email="").select_related("node")
    sent = 0
    for job in due.order_by("id")[:BATCH]:
        try:
            send_mail(subject(job), body(job), settings.DEFAULT_FROM_EMAIL, [job.email])
        except Exception as exc:  # SMTP away: keep it for the next round
            log.warning("mail for job %s not sent yet: %s", job.id, exc)
            return sent
        Job.objects.filter(id=job.id).update(notified=True)
        sent += 1
    return sent


def subject(job: Job) -> str:
    return f"[dctoolkit] job {job.id} ({job.name}) {job.state}"


def body(job: Job) -> str:
    lines = [
        f"Job {job.id} ({job.name}) ended: {job.state}.",
        f"Exit status: {job.exit_code if job.exit_code is not None else '-'}",
        f"Node: {job.node.name if job.node_id else '-'}",
        f"Wall time: {format_seconds(job.run_seconds)}   CPU time: {format_seconds(job.cpu_seconds)}",
        f"Asked for {job.request_cpus} cpu(s) and {format_mb(job.request_memory_mb)}; "
        f"peak memory {format_mb(job.max_rss_mb)}.",
    ]
    if job.reason:
        lines.append(f"Reason: {job.reason}")
    if job.state != "succeeded":
        tail = job.folder() / "stderr"
        if tail.is_file():
            text = tail.read_text(errors="replace").splitlines()[-20:]
            lines += ["", "Last lines of stderr:", *text]
    lines += ["", f"Details: {settings.DCT_BASE_URL}/jobs/{job.id}/"]
    return "\n".join(lines) + "\n"
