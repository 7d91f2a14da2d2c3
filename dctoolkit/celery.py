"""The Celery app.  Queues: `control` (default) and one per node, named after it (`node-1`)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dctoolkit.settings")

app = Celery("dctoolkit")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_default_queue = "control"
app.autodiscover_tasks(["dctoolkit.jobs"])
