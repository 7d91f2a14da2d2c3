"""Listing a job's output files for the API and the portal, whatever a job left in its folder.

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

# The most files one listing shows (a job that makes a million files gets a page, not a timeout).
MAX_LISTED = 10_000


@dataclass
class Listing:
    """Plain files under a folder: relative path and size; what was left out, and why."""

    files: list[dict] = field(default_factory=list)
    unreadable_names: int = 0
    truncated: bool = False


def list_outputs(root: Path, limit: int = MAX_LISTED) -> Listing:
    """Every plain file below `root` (no links followed), sorted by path, at most `limit` of them."""
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
                if len(listing.files) >= limit:
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
