"""The Celery app.  Queues: `control` (default) and one per node, named after it (`node-1`)."""

from __future__ import annotations

import functools
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")

app = Celery("dctoolkit")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_default_queue = "control"
# Celery's Django fix-up closes every database connection before and after
# each task unless this is set; the node keeps them (CONN_MAX_AGE, checked
# before reuse by close_old_connections at each job's start), since opening
# one costs more than the statements a short job makes.  Celery reads this
# old-style name as is.
app.conf.update(CELERY_DB_REUSE_MAX=1_000_000)
app.autodiscover_tasks(["dctoolkit.jobs"])


@functools.cache
def settle_conf() -> None:
    """Copy every Celery setting into the app's own table (once; Django's settings are final by then).

    Celery looks several settings up for each message it sends, each time
    through Django's lazy settings object; settled, a lookup is one dict
    hit, and sending a scheduling pass's messages costs a third less.
    """
    app.conf.update({key: app.conf[key] for key in list(app.conf.keys())})
