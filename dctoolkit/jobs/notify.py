"""Email when jobs end: sent by the scheduler loop, off the jobs' critical path, retried until it goes.

A single job gets one message when it ends.  A `queue = N` batch (N > 1)
gets one digest when its last job ends, not N messages.  HTCondor's
`notification = Error` mails only when a job did not succeed (a batch: when
any did not); `Never` leaves no address to mail.  Each mail compares
what was requested with what was used (`jobs/intake/advice.py`).

A mail is claimed (a conditional UPDATE of `notified`) before it is sent and
given back if sending fails, so two schedulers never send it twice and an
SMTP server that is down only delays it.  (A scheduler killed between claim
and send loses that one mail: rare, and better than sending duplicates.)
"""

from __future__ import annotations

import logging
import smtplib
from collections import Counter
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q

from dctoolkit.jobs import gputally
from dctoolkit.jobs.intake.advice import Advice, Usage, compare
from dctoolkit.jobs.models import FINAL_STATES, OWES_MAIL, Dag, DagState, Job, JobState, Submission
from dctoolkit.lib.units import format_seconds

log = logging.getLogger(__name__)

# Mails per scheduler round at most; the rest go next round.
BATCH = 50
# After a failed send, wait this long before trying again, doubling up to the cap.
RETRY_FIRST_SECONDS = 5
RETRY_MAX_SECONDS = 120
# Lines of stderr a failed job's mail quotes.
STDERR_LINES = 20
# Failed jobs a digest lists one by one.
DIGEST_FAILED_LISTED = 20

_retry_at: datetime | None = None
_retry_seconds = RETRY_FIRST_SECONDS


class MailNotSentError(Exception):
    """The SMTP server could not take a mail; it stays due."""


def send_due(now: datetime) -> int:
    """Send the mails that are due (ended single jobs, fully ended batches); returns how many went.

    After a failure nothing is tried until a back-off has passed, so a down
    SMTP server costs one attempt per back-off, not one per round.
    """
    global _retry_at, _retry_seconds
    if _retry_at and now < _retry_at:
        return 0
    if not mail_may_be_due():
        return 0
    # What ended owing mail, and what of it will never be mailed (notification = error, all succeeded): the
    # same reads tell both, so the settling costs statements only in a round that has something to settle.
    jobs = list(_ended_singles().annotate(notification_rule=F("submission__notification"))[:BATCH])
    batches = list(_ended_batches()[:BATCH])
    if any(_unmailed(job.notification_rule, job.state == JobState.SUCCEEDED) for job in jobs) or any(
        _unmailed(sub.notification, sub.unsuccessful == 0) for sub in batches
    ):
        settle_unmailed()
    sent = 0
    try:
        for job in jobs:
            if not _unmailed(job.notification_rule, job.state == JobState.SUCCEEDED):
                sent += send_claimed(Job.objects.filter(id=job.id), subject(job), body(job), job.email)
        for dag in due_dags()[:BATCH]:
            sent += send_claimed(Dag.objects.filter(id=dag.id), dag_subject(dag), dag_body(dag), dag.email)
        for sub in batches:
            if _unmailed(sub.notification, sub.unsuccessful == 0):
                continue
            members = list(sub.jobs.select_related("node").order_by("id"))
            sent += send_claimed(Submission.objects.filter(id=sub.id), digest_subject(sub, members),
                                 digest_body(sub, members), sub.email)  # fmt: skip
    except MailNotSentError as exc:
        log.warning("mail not sent yet (%s); trying again in %ss", exc, _retry_seconds)
        _retry_at = now + timedelta(seconds=_retry_seconds)
        _retry_seconds = min(_retry_seconds * 2, RETRY_MAX_SECONDS)
        return sent
    _retry_at, _retry_seconds = None, RETRY_FIRST_SECONDS
    return sent


def _unmailed(notification: str, succeeded: bool) -> bool:
    """Whether an ended job or batch with an address is never mailed: `notification = error`, and it succeeded."""
    return notification == "error" and succeeded


def mail_may_be_due() -> bool:
    """Whether an ended job or DAG has an address and no mail yet: one probe of the owes_mail indexes.

    False means nothing is due; True, that `due_jobs`, `due_dags` and `due_batches` are worth asking (a
    batch's ended jobs keep it True until its digest goes).  Written out, its conditions as the indexes'
    own (SQLite uses a partial index only for a query that repeats its condition, constants included)."""
    with connection.cursor() as cursor:
        cursor.execute(_owes_mail_sql(connection.vendor))
        return bool(cursor.fetchone()[0])


@cache
def _owes_mail_sql(vendor: str) -> str:
    # The states are the enum's own constant strings.
    owes = "notified = 0 AND email <> ''" if vendor == "mysql" else "NOT notified AND NOT (email = '')"
    ended = ", ".join(f"'{state.value}'" for state in FINAL_STATES)
    return (
        f"SELECT EXISTS (SELECT 1 FROM {Job._meta.db_table} WHERE {owes} AND state IN ({ended}))"  # noqa: S608
        f" OR EXISTS (SELECT 1 FROM {Dag._meta.db_table} WHERE {owes} AND state <> '{DagState.RUNNING.value}')"
    )


def settle_unmailed() -> None:
    """Mark done what ended with an address but will never be mailed: `notification = error` single jobs
    that succeeded, and such batches that all did.  Their mail is not owed, and left unmarked they would
    keep `mail_may_be_due` True every round.  `send_due` calls it only in a round whose reads found such a
    job or batch."""
    Job.objects.filter(
        OWES_MAIL, state=JobState.SUCCEEDED, submission__job_count=1, submission__notification="error"
    ).update(notified=True)
    unmailed = Submission.objects.filter(OWES_MAIL, job_count__gt=1, notification="error").exclude(
        Exists(Job.objects.filter(submission=OuterRef("pk")).exclude(state=JobState.SUCCEEDED))
    )
    ids = list(unmailed.values_list("id", flat=True)[:BATCH])
    if ids and Submission.objects.filter(id__in=ids, notified=False).update(notified=True):
        Job.objects.filter(submission_id__in=ids).update(notified=True)


def due_jobs():
    """Ended jobs, alone in their submission, whose owner asked for mail and has not had it."""
    return _ended_singles().exclude(submission__notification="error", state=JobState.SUCCEEDED)


def _ended_singles():
    """Ended jobs, alone in their submission, with an address and no mail yet (a notification = error one
    that succeeded is settled unmailed, not mailed)."""
    return (
        Job.objects.filter(state__in=FINAL_STATES, notified=False, submission__job_count=1)
        .exclude(email="")
        .select_related("node")
        .order_by("id")
    )


def due_batches():
    """Batches (queue = N > 1) whose every job has ended, whose digest has not gone."""
    return _ended_batches().exclude(notification="error", unsuccessful=0)


def _ended_batches():
    """Batches (queue = N > 1) whose every job has ended, with an address and no digest yet (a notification =
    error one whose jobs all succeeded, `unsuccessful` 0, is settled unmailed)."""
    return (
        Submission.objects.filter(notified=False, job_count__gt=1)
        .exclude(email="")
        .annotate(
            unfinished=Count("jobs", filter=~Q(jobs__state__in=FINAL_STATES)),
            unsuccessful=Count("jobs", filter=~Q(jobs__state=JobState.SUCCEEDED)),
        )
        .filter(unfinished=0)
        .order_by("id")
    )


def due_dags():
    """Ended DAGs whose owner asked for mail (a node's submit file names an address): one mail per DAG; its
    jobs send none of their own (the engine clears their addresses)."""
    return Dag.objects.filter(notified=False).exclude(state=DagState.RUNNING).exclude(email="").order_by("id")


def dag_subject(dag: Dag) -> str:
    return f"[dctoolkit] dag {dag.id} ({dag.source_name}) {dag.state}"


def dag_body(dag: Dag) -> str:
    nodes = list(dag.nodes.order_by("id").values_list("name", "state", "reason"))
    counts = Counter(state for _, state, _ in nodes)
    lines = [
        f"DAG {dag.id} ({dag.source_name}) {dag.state}" + (f", return value {dag.exit_code}" if dag.exit_code else ""),
        f"nodes: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}",
    ]
    if dag.aborted:
        lines.append(dag.aborted)
    lines += [f"  {name}: {state}{f' ({reason})' if reason else ''}" for name, state, reason in nodes
              if state != JobState.SUCCEEDED][:DIGEST_FAILED_LISTED]  # fmt: skip
    lines.append(f"{settings.DCT_BASE_URL.rstrip('/')}/dags/{dag.id}/")
    return "\n".join(lines) + "\n"


def send_claimed(rows, subject_line: str, text: str, address: str) -> int:
    """Claim the mail (notified False -> True), send it, give the claim back on failure; 1 if sent."""
    if not rows.filter(notified=False).update(notified=True):
        return 0  # another scheduler has it
    try:
        send_mail(subject_line, text, settings.DEFAULT_FROM_EMAIL, [address])
    except smtplib.SMTPRecipientsRefused as exc:
        if all(code >= 500 for code, _ in exc.recipients.values()):
            # The address itself is refused for good: retrying would hold back everyone else's mail.
            log.warning("mail to %s given up: the SMTP server refuses that address (%s)", address, exc.recipients)
            return 0
        rows.update(notified=False)  # 4xx: "try again later"
        raise MailNotSentError(f"{address} refused for now: {exc.recipients}") from exc
    except Exception as exc:  # any other SMTP or socket trouble: the mail stays due
        rows.update(notified=False)
        raise MailNotSentError(f"{type(exc).__name__}: {exc}") from exc
    if rows.model is Submission:  # its jobs are covered by the digest
        Job.objects.filter(submission_id__in=rows.values("id")).update(notified=True)
    return 1


# --- one job ------------------------------------------------------------------


def subject(job: Job) -> str:
    return f"[dctoolkit] job {job.id} ({job.name}) {job.state}"


def body(job: Job) -> str:
    lines = [
        f"Job {job.id} ({job.name}) ended: {job.state}.",
        "",
        f"Exit status: {job.exit_code if job.exit_code is not None else '-'}",
        # mypy: node_id is set, so node is a Node.
        f"Node:        {job.node.name if job.node_id else '-'}",  # type: ignore[union-attr]
        f"Wall time:   {format_seconds(job.run_seconds)}",
        f"CPU time:    {format_seconds(job.cpu_seconds)}",
    ]
    if job.reason:
        lines.append(f"Reason:      {job.reason}")
    lines += advice_lines(compare(usage_of(job)))
    lines += gpu_lines(job)
    if job.state != JobState.SUCCEEDED:
        lines += stderr_tail(job)
    lines += ["", f"Details: {job_url(job.id)}"]
    return "\n".join(lines) + "\n"


def gpu_lines(job: Job) -> list[str]:
    """How busy a GPU job's GPUs were, and the idle line when they ended idle (gputally)."""
    shape = gputally.utilization(job)
    if shape is None or shape["mean"] is None:
        return []
    lines = ["", f"GPU use:     {shape['mean']:.0f}% on average over the run"]
    idle = gputally.idle_line_of(job)
    return [*lines, idle] if idle else lines


def usage_of(job: Job) -> Usage:
    return Usage(job.request_cpus, job.request_memory_mb, job.run_seconds, job.cpu_seconds, job.max_rss_mb)


def advice_lines(advice: Advice | None, each: str = "") -> list[str]:
    if advice is None:
        return []
    lines = ["", f"Resources: {advice.comparison}{each}."]
    if advice.suggestions:
        lines.append("Next time, ask for about what it used: " + ", ".join(advice.suggestions))
    return lines


def stderr_tail(job: Job) -> list[str]:
    path = job.folder() / "stderr"
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        # The end is all we quote; a huge stderr is not read whole.
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 64 * 1024))
        tail = f.read().decode(errors="replace").splitlines()[-STDERR_LINES:]
    return ["", "Last lines of stderr:", *(f"  {line}" for line in tail)] if tail else []


def job_url(job_id: int) -> str:
    return f"{settings.DCT_BASE_URL}/jobs/{job_id}/"


# --- a batch --------------------------------------------------------------------


def digest_subject(sub: Submission, jobs: list[Job]) -> str:
    return f"[dctoolkit] batch of {len(jobs)} jobs ({sub.source_name}) ended: {state_counts(jobs)}"


def digest_body(sub: Submission, jobs: list[Job]) -> str:
    ids = [j.id for j in jobs]
    failed = [j for j in jobs if j.state == JobState.FAILED]
    lines = [
        f"All {len(jobs)} jobs of {sub.source_name} (jobs {ids[0]}-{ids[-1]}) have ended: {state_counts(jobs)}.",
        "",
        f"Wall time, all jobs together: {format_seconds(sum(j.run_seconds or 0 for j in jobs))}",
        f"CPU time, all jobs together:  {format_seconds(sum(j.cpu_seconds or 0 for j in jobs))}",
    ]
    if failed:
        lines += ["", "Failed:"]
        for job in failed[:DIGEST_FAILED_LISTED]:
            exit_status = job.exit_code if job.exit_code is not None else "-"
            lines.append(f"  job {job.id} ({job.name}): exit status {exit_status}, {job.reason}  {job_url(job.id)}")
        if len(failed) > DIGEST_FAILED_LISTED:
            lines.append(f"  ... and {len(failed) - DIGEST_FAILED_LISTED} more")
    lines += advice_lines(compare(batch_usage(jobs)), each=" (per job: average cpus, largest peak)")
    idle = [line for line in (gputally.idle_line_of(j) for j in jobs) if line]
    if idle:
        lines += ["", "GPUs held idle:", *(f"  {line}" for line in idle[:DIGEST_FAILED_LISTED])]
    lines += ["", f"Details: {job_url(ids[0])} to {job_url(ids[-1])}"]
    return "\n".join(lines) + "\n"


def state_counts(jobs: list[Job]) -> str:
    counts = Counter(j.state for j in jobs)
    return ", ".join(f"{counts[s]} {s}" for s in FINAL_STATES if counts[s])


def batch_usage(jobs: list[Job]) -> Usage:
    """One job's worth: cpus averaged over the jobs that ran, the largest peak memory."""
    ran = [j for j in jobs if j.run_seconds]
    first = jobs[0]
    return Usage(
        first.request_cpus,
        first.request_memory_mb,
        # mypy: `ran` keeps only jobs whose run_seconds is set.
        sum(j.run_seconds for j in ran) or None,  # type: ignore[misc]
        sum(j.cpu_seconds or 0 for j in ran) if ran else None,
        max((j.max_rss_mb for j in ran if j.max_rss_mb is not None), default=None),
    )
