"""DCT_RETENTION: the scheduler deletes old jobs' files by itself, one bounded batch per round.

The jobs are taken in the order they ended, after the last one this
scheduler purged, so a round reads only a batch; once it has caught up it
looks again every CHECK_SECONDS (or every DCT_RETENTION, if shorter).  Deleting is `./dct purge`'s own code
(`history.purge_jobs`): records and accounting stay.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from dctoolkit.jobs.models import FINAL_STATES, Dag, Job
from dctoolkit.jobs.web.history import purge_jobs
from dctoolkit.lib.units import format_mb

log = logging.getLogger(__name__)

BATCH = 500
CHECK_SECONDS = 60


@dataclass
class Retention:
    """Where this scheduler's purge has got to: the last job purged (finished_at, id)."""

    after: tuple[datetime, int] | None = None
    resume_at: datetime | None = None

    def step(self, now: datetime) -> int:
        """Purge one batch of jobs that ended more than DCT_RETENTION ago; returns how many lost their files."""
        seconds = settings.DCT_RETENTION_SECONDS
        if not seconds or (self.resume_at is not None and now < self.resume_at):
            return 0
        cutoff = now - timedelta(seconds=seconds)
        rows = expired_batch(cutoff, self.after, BATCH)
        purged = 0
        if rows:
            purged, freed = purge_jobs([(job_id, sub_id) for job_id, sub_id, _ in rows], cutoff)
            self.after = (rows[-1][2], rows[-1][0])
            if purged:
                log.info("retention: removed the files of %s jobs (%s)", purged, format_mb(freed / 1024 / 1024))
        purged += purge_dags(cutoff)
        pause = min(CHECK_SECONDS, seconds)
        self.resume_at = now + timedelta(seconds=pause) if len(rows) < BATCH else None
        return purged


def purge_dags(cutoff: datetime) -> int:
    """Remove the stored copies of the files of DAGs that ended before `cutoff` (a batch); returns how many.
    The rows stay; such a DAG run again (`dag ID --rerun`) fails its nodes with 'file not found'."""
    done = 0
    for dag in Dag.objects.filter(finished_at__lt=cutoff).exclude(files={}).order_by("id")[:BATCH]:
        if Dag.objects.filter(id=dag.id, finished_at__lt=cutoff).update(files={}):
            shutil.rmtree(dag.folder(), ignore_errors=True)
            done += 1
    return done


def expired_batch(cutoff: datetime, after: tuple[datetime, int] | None, limit: int) -> list[tuple[int, int, datetime]]:
    """(job id, submission id, finished_at) of up to `limit` jobs ended before `cutoff`, after `after`."""
    jobs = Job.objects.filter(state__in=FINAL_STATES, finished_at__lt=cutoff)
    if after is not None:
        jobs = jobs.filter(Q(finished_at__gt=after[0]) | Q(finished_at=after[0], id__gt=after[1]))
    rows = jobs.order_by("finished_at", "id").values_list("id", "submission_id", "finished_at")[:limit]
    return [(job_id, sub_id, finished) for job_id, sub_id, finished in rows if finished is not None]


retention = Retention()
