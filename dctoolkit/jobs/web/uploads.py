"""The files of an upload (API, portal) by the key the intake matches them with: a path or a name.

A client that sends a folder (the portal's folder picker, `./dct submit`
through DCT_SERVER for a `dir/` input) sends each file's path relative to the
submission file's folder beside it, one `paths` field per `files` field;
without `paths`, files are matched by their names, as they always were.  A
folder that holds no file (an empty `dir/` input) is sent by its path in a
`dirs` field, as no file can bring it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import PurePosixPath
from typing import TypeVar

from dctoolkit.jobs.intake.parse import MAX_NAME_BYTES

# Deeper than this, a path cannot be a folder input's (`dir/` stages only the files directly in `dir`).
MAX_PATH_PARTS = 16

Upload = TypeVar("Upload")


class UploadError(ValueError):
    """What is wrong with an upload's files, said so that the client can fix it."""


def path_problem(path: str) -> str | None:
    """Why `path` cannot be an uploaded file's path (relative, '/'-separated, no '.' or '..'), or None."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return f"'{path[:80]}': send a path relative to the submission file's folder, with '/' between folders"
    if any(part in ("", ".", "..") for part in parts):
        return f"'{path[:80]}': a path may not hold an empty part, '.' or '..'; send it as data/a.txt"
    if len(parts) > MAX_PATH_PARTS:
        return f"'{path[:80]}…': more than {MAX_PATH_PARTS} folders deep; pack such a tree (tar)"
    long = next((part for part in parts if len(part.encode(errors="replace")) > MAX_NAME_BYTES), None)
    if long is not None:
        return f"'{long[:40]}…': a file or folder name may be at most {MAX_NAME_BYTES} bytes; rename it"
    return None


def keyed_uploads(files: Sequence[Upload], names: Sequence[str], paths: Sequence[str]) -> dict[str, Upload]:
    """`files` by path (when `paths` came with them, one each, in order) or else by `names`' file names.

    Raises UploadError naming every problem at once: a count that does not
    match, a path that is not a plain relative path, two files sent as one.
    """
    problems = []
    if paths and len(paths) != len(files):
        raise UploadError(
            f"{len(paths)} 'paths' fields for {len(files)} files; send one 'paths' field per 'files' field, "
            "in the same order (or none, to match files by name)"
        )
    keys = [path.strip() for path in paths] if paths else [PurePosixPath(name).name for name in names]
    if paths:
        problems += [problem for problem in map(path_problem, keys) if problem]
    seen: dict[str, Upload] = {}
    for key, upload in zip(keys, files, strict=True):
        if key in seen:
            problems.append(f"two files {'sent as' if paths else 'named'} '{key}'; send each file once")
        seen[key] = upload
    if problems:
        raise UploadError("; ".join(dict.fromkeys(problems)))
    return seen


def sent_folders(dirs: Sequence[str], keys: Collection[str]) -> frozenset[str]:
    """The `dirs` of an upload (folders sent without a file, an empty `dir/` input's), each a plain relative
    path; `keys` are the files' keys.  Raises UploadError naming every problem at once."""
    folders = [folder.strip().removeprefix("./").rstrip("/") for folder in dirs]
    problems = [problem for problem in map(path_problem, folders) if problem]
    problems += [
        f"'{folder[:80]}' is sent as a file and as a folder; send it once" for folder in folders if folder in keys
    ]
    if problems:
        raise UploadError("; ".join(dict.fromkeys(problems)))
    return frozenset(folders)
