"""How much shared storage each user's jobs and submissions take, and the quota on it.

Measured by walking the folders (blocks really held, as DCT_MAX_OUTPUT_MB
counts them), at most once per CACHE_SECONDS per user: a submission checks
the quota against a figure at most that old.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from dctoolkit.jobs.intake.parse import SubmissionError
from dctoolkit.jobs.models import Dag, Job, Submission
from dctoolkit.lib.units import format_mb

CACHE_SECONDS = 300


class QuotaExceededError(SubmissionError):
    """The submitting user's files take more than DCT_USER_QUOTA."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(source, 0, message)
        self.args = (f"{source}: {message}",)


def folder_bytes(path: Path | str) -> int:
    """Bytes of data held by the files under `path` (0 when it is not there); links are not followed."""
    total = 0
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                total += folder_bytes(entry.path)
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue  # removed meanwhile
    return total


def user_storage_bytes(user_id: int, fresh: bool = False) -> int:
    """What the user's job, submission and DAG folders hold, measured at most CACHE_SECONDS ago (or now)."""
    key = f"dct:storage:{user_id}"
    if not fresh:
        cached = cache.get(key)
        if cached is not None:
            return int(cached)
    root = Path(settings.DCT_STORAGE)
    used = sum(
        folder_bytes(root / "jobs" / str(i)) for i in Job.objects.filter(owner_id=user_id).values_list("id", flat=True)
    )
    used += sum(
        folder_bytes(root / "submissions" / str(i))
        for i in Submission.objects.filter(owner_id=user_id).values_list("id", flat=True)
    )
    # A DAG's copies of its nodes' files (jobs/intake/dagqueue.py) are the user's too.
    used += sum(
        folder_bytes(root / "dags" / str(i)) for i in Dag.objects.filter(owner_id=user_id).values_list("id", flat=True)
    )
    cache.set(key, used, CACHE_SECONDS)
    return used


def quota_bytes() -> int | None:
    mb = settings.DCT_USER_QUOTA_MB
    return None if mb is None else mb * 1024 * 1024


def check_quota(user_id: int, source: str) -> None:
    """Raise QuotaExceededError when the user's files already take more than DCT_USER_QUOTA."""
    quota = quota_bytes()
    if quota is None:
        return
    used = user_storage_bytes(user_id)
    if used > quota:
        retention = settings.DCT_RETENTION_SECONDS
        when = f" (files of jobs ended {retention / 86400:g} days ago go by themselves)" if retention else ""
        raise QuotaExceededError(
            source,
            f"your files in shared storage take {format_mb(used / 1024 / 1024)}, over your quota of "
            f"{format_mb(quota / 1024 / 1024)} (DCT_USER_QUOTA); nothing was queued. Fetch the results you need "
            f"and ask staff to purge old jobs' files{when}.",
        )


def storage_rows(viewer, everyone: bool = True) -> list[dict]:
    """The storage figures a page shows `viewer`: their own; staff (with `everyone`) every user who submitted."""
    from django.contrib.auth import get_user_model

    users = (
        get_user_model().objects.filter(submissions__isnull=False).distinct().order_by("username")
        if viewer.is_staff and everyone
        else [viewer]
    )
    quota = quota_bytes()
    rows = []
    for user in users:
        used = user_storage_bytes(user.pk)
        rows.append({"user": user.username, "bytes": used, "quota": quota, "over": quota is not None and used > quota})
    return rows
