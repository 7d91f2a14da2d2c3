"""A submission's dependencies (after_ok, after_any, after_fail) checked against the database.

Every parent must be a job of the submitter: a missing job and another
user's are refused alike (`FILE:LINE: after_ok: no job 12 of yours`), so that
nobody learns which ids other people have.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from dctoolkit.jobs.intake.parse import DependencyRef, SubmissionError
from dctoolkit.jobs.intake.parse import Submission as ParsedSubmission
from dctoolkit.jobs.models import Dependency, Job, Submission

# Ids per IN (...) of one query: below SQLite's oldest parameter limit (999).
CHUNK = 900
# Edges one submission may add (jobs x parents): a million rows is a mistake, not a pipeline.
MAX_EDGES = 1_000_000


def parents_of(parsed: ParsedSubmission, owner: AbstractBaseUser) -> list[tuple[int, str]]:
    """(parent job id, kind) for every job of `parsed`, after checking each parent is the owner's.

    Raises SubmissionError at the key's line (line 0: a command-line option,
    whose name is the error's source).
    """
    edges: dict[tuple[int, str], None] = {}
    for ref in parsed.dependencies:
        for parent in _ids_of(ref, parsed.source, owner):
            edges[(parent, ref.kind)] = None
    if len(edges) * len(parsed.jobs) > MAX_EDGES:
        ref = parsed.dependencies[0]
        raise _refusal(
            ref,
            parsed.source,
            f"{len(parsed.jobs):,} jobs each waiting on {len(edges):,} others is more than {MAX_EDGES:,} "
            "dependencies; let one job gather them, and depend on that",
        )
    return list(edges)


def _ids_of(ref: DependencyRef, source: str, owner: AbstractBaseUser) -> list[int]:
    wanted = list(ref.ids)
    found: set[int] = set()
    for first in range(0, len(wanted), CHUNK):
        chunk = wanted[first : first + CHUNK]
        # mypy: the project's user model is auth.User.
        found.update(Job.objects.filter(owner=owner, id__in=chunk).values_list("id", flat=True))  # type: ignore[misc]
    missing = [i for i in wanted if i not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise _refusal(
            ref, source, f"{ref.kind}: no job {missing[0]} of yours{more}; './dct jobs --all' lists your jobs"
        )
    ids = list(wanted)
    for batch in ref.batches:
        # mypy: the project's user model is auth.User.
        if not Submission.objects.filter(id=batch, owner=owner).exists():  # type: ignore[misc]
            raise _refusal(ref, source, f"{ref.kind}: no submission {batch} of yours (batch:{batch})")
        ids += Job.objects.filter(submission_id=batch).order_by("id").values_list("id", flat=True)
    return ids


def _refusal(ref: DependencyRef, source: str, message: str) -> SubmissionError:
    if ref.line == 0:
        return SubmissionError("--" + ref.kind.replace("_", "-"), 0, message)
    return SubmissionError(source, ref.line, message)


def add_edges(jobs: list[Job], parents: list[tuple[int, str]]) -> None:
    """The dependency rows of newly queued `jobs` (their ids known), each on every parent."""
    Dependency.objects.bulk_create(
        [Dependency(child_id=job.id, parent_id=parent, kind=kind) for job in jobs for parent, kind in parents],
        batch_size=2000,
    )
