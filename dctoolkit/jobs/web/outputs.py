"""The one listing of a job's output files: the API's files/, the portal's job page, `results`.

Whatever a job left in its folder.

A job controls the names and the shape of what it writes: a name that is not
UTF-8 cannot go into JSON or a page (it is left out of the listing, and
counted), a tree 1,100 folders deep must not exhaust Python's recursion
(the walk keeps its own stack), and links are neither followed nor listed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dctoolkit.jobs.models import Job

# The most files one listing shows (a job that makes a million files gets a page, not a timeout).
MAX_LISTED = 10_000


@dataclass
class Listing:
    """Plain files under a folder: relative path and size; what was left out, and why."""

    files: list[dict] = field(default_factory=list)
    unreadable_names: int = 0
    truncated: bool = False


def job_outputs(job: Job, limit: int | None = MAX_LISTED) -> Listing:
    """The job's collected output files (below its folder's outputs/), as list_outputs lists them."""
    return list_outputs(job.folder() / "outputs", limit)


def list_outputs(root: Path, limit: int | None = MAX_LISTED) -> Listing:
    """Every plain file below `root` (no links followed), sorted by path, at most `limit` of them (None: all)."""
    listing = Listing()
    if not root.is_dir() or root.is_symlink():
        return listing
    stack = [""]
    while stack:
        relative = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, relative)))
        except OSError:
            continue
        for entry in entries:
            path = f"{relative}/{entry.name}" if relative else entry.name
            if not _is_text(entry.name):
                listing.unreadable_names += 1
                continue
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                stack.append(path)
            elif stat.S_ISREG(mode):
                if limit is not None and len(listing.files) >= limit:
                    listing.truncated = True
                    continue
                listing.files.append({"path": path, "size": entry.stat(follow_symlinks=False).st_size})
    listing.files.sort(key=lambda f: f["path"])
    return listing


def _is_text(name: str) -> bool:
    # os.scandir gives undecodable bytes as lone surrogates (PEP 383).
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
