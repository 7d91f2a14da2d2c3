"""Granted folders: the rules for which host folder a user's jobs may be given, and where a job may start.

No Django here (the model is `models.Grant`, the checks at submit are in
`jobs/intake/queue.py`, the binding on a node in `nodes/worker/sandbox.py`):
plain paths in, a canonical path or a message for a person out.

A granted folder is stored canonical (absolute, resolved: no `..`, no symbolic
link on the way), so that what staff granted is what a node binds; a node
resolves it again before each job, and binds the folder it opened, never a
path a user could change under it (see sandbox.open_granted).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

# Never granted, nor anything below them, whatever staff ask: the kernel's own file systems, and the system
# folders every job sees read-only (a grant of /etc would show what the sandbox covers there, such as
# /etc/shadow; a writable one of /usr would let a job change the programs of the host and of every job).
NEVER_GRANTED = ("/proc", "/sys", "/dev", "/run", "/boot", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32",
                 "/lib64", "/libx32")  # fmt: skip
# Never granted themselves (folders below them may be): `/` is every folder at once, and /tmp is the
# sandbox's own, emptied between the jobs of a warm sandbox: bound from the host, the host's would be.
NEVER_GRANTED_ITSELF = ("/", "/tmp")


class GrantPathError(ValueError):
    """A folder that cannot be granted, or a path that no grant holds; the message is for a person."""


@dataclass(frozen=True)
class GrantedFolder:
    """One folder a user's jobs get: its canonical path, and whether jobs may write in it."""

    path: str
    writable: bool = False


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def clean_path(text: str) -> str:
    """`text` as an absolute path with no `.`, `..` or doubled slashes; GrantPathError otherwise.

    `..` is refused rather than worked out: `/data/alice/../bob` says one thing and means another.
    """
    if not text.startswith("/"):
        raise GrantPathError(f"{text}: give an absolute path, such as /data/lab/alice")
    if "\0" in text:
        raise GrantPathError("a path holds a NUL byte; give the folder's path")
    if ".." in text.split("/"):
        raise GrantPathError(f"{text}: '..' is not allowed in the path; give the folder's own path")
    return posixpath.normpath(text).replace("//", "/")


def canonical_folder(text: str, hidden: Iterable[str] = ()) -> str:
    """The canonical path of the folder `text` names, to be granted; GrantPathError for one that cannot be.

    Refused: a relative path or one with `..`; a path that is not an existing folder; `/` and /tmp;
    anything in /proc, /sys, /dev, /run, /boot and the system folders (NEVER_GRANTED); a folder inside
    one no job may see (`hidden`: the project, storage, scratch, the database's).
    """
    path = clean_path(text)
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise GrantPathError(f"{text}: no such folder on this machine; create it first, or check the path")
    return check_grantable(real, hidden)


def check_grantable(real: str, hidden: Iterable[str] = ()) -> str:
    """`real` (a resolved path) when it may be granted, else GrantPathError naming why."""
    if real == "/":
        raise GrantPathError("/ cannot be granted: it is every folder at once; grant the user's own folder")
    if real in NEVER_GRANTED_ITSELF:
        raise GrantPathError(f"{real} cannot be granted: it is each job's own, private one; grant a folder in it")
    for top in NEVER_GRANTED:
        if _under(real, top):
            raise GrantPathError(f"{real}: folders under {top} cannot be granted")
    for secret in hidden:
        if _under(real, secret):
            raise GrantPathError(
                f"{real} lies inside {secret}, which no job may see (the project, shared storage, scratch "
                "or the database); grant a folder outside it"
            )
    return real


def granted_folder_for(path: str, grants: Iterable[GrantedFolder]) -> GrantedFolder | None:
    """The grant whose folder holds `path` (a clean absolute path), the innermost; None when none does."""
    holding = [g for g in grants if _under(path, g.path)]
    return max(holding, key=lambda g: len(g.path)) if holding else None


def not_granted_message(path: str, user: str, grants: Iterable[GrantedFolder] = ()) -> str:
    """Why a job may not start in `path`, and what to do (naming the user's granted folders, as stored:
    resolved, so that a path written through a link is seen to differ)."""
    folders = ", ".join(g.path for g in grants)
    return (
        f"{path} is not a folder granted to {user}; a job may run only in a folder staff granted "
        f"(./dct grant {user} FOLDER), or in its own folder (leave initialdir out)"
        + (f"; folders granted to {user}: {folders}" if folders else "")
    )
