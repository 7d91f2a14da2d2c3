"""`./dct status ID...`: one word per job, as scripts and workflow tools read it.

Pure: the words for states, the check of the ids, and the answer for rows
already read.  Reading the rows (fast, without Django's start-up) is
`dctoolkit/commandline.py`'s; the Django command `status` and the remote
mode answer through the same functions, so the words are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from dctoolkit.jobs.visibility import Viewer, may_see
from dctoolkit.lib.ids import MAX_ID, bounded_int

# Snakemake's cluster-generic executor reads exactly these three words.  A
# final state maps to success or failed; every other state (waiting, queued,
# held, dispatched, running, and any state added later) is `running`.
SNAKEMAKE_WORDS = {"succeeded": "success", "failed": "failed", "cancelled": "failed"}
SNAKEMAKE_NOT_FINAL = "running"
# `--as` styles: the job's own state, or what Snakemake reads.
STYLES = ("state", "snakemake")


class StatusError(Exception):
    """Ids that are not numbers, or not jobs the user may see; the message is for a person."""


class JobRow(NamedTuple):  # not a dataclass: `dataclasses` (and `inspect`) cost dct status a fifth of its start-up
    """What status needs of a job."""

    id: int
    state: str
    owner_id: int


def parse_job_ids(texts: Iterable[str]) -> list[int]:
    """The ids as numbers, in order; StatusError naming every one that is not an id."""
    ids, bad = [], []
    for text in texts:
        number = bounded_int(text, 0, MAX_ID)
        if number is None:
            bad.append(text if len(text) <= 40 else f"{text[:40]}… ({len(text):,} characters)")
        else:
            ids.append(number)
    if bad:
        shown = ", ".join(f"'{b}'" for b in bad)
        raise StatusError(f"{shown}: not a job id; job ids are numbers, as './dct jobs' shows")
    return ids


def status_word(state: str, style: str = "state") -> str:
    """The word printed for a job in `state`."""
    if style == "snakemake":
        return SNAKEMAKE_WORDS.get(state, SNAKEMAKE_NOT_FINAL)
    return state


def status_words(ids: list[int], rows: Mapping[int, JobRow], viewer: Viewer | None, style: str = "state") -> list[str]:
    """One word per id, in the order given; StatusError naming the ids that are not the viewer's jobs.

    `rows` holds the jobs read for those ids (missing ones absent); `viewer`
    is None when the acting user has no account yet (so has no jobs).  All or
    nothing: a line per id, or no line at all, so a script never pairs a word
    with the wrong id.
    """
    unknown = [i for i in ids if i not in rows or viewer is None or not may_see(viewer, rows[i].owner_id)]
    if unknown:
        raise StatusError(unknown_jobs_message(unknown))
    return [status_word(rows[i].state, style) for i in ids]


def unknown_jobs_message(ids: list[int]) -> str:
    # The same words for a job that does not exist and another user's job: neither is yours.
    if len(ids) == 1:
        return f"no job {ids[0]} of yours; './dct jobs --all' lists your jobs"
    return f"no jobs {', '.join(map(str, ids))} of yours; './dct jobs --all' lists your jobs"
