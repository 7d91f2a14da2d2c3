"""The Celery app.  Queues: `control` (default) and one per node, named after it (`node-1`)."""

from __future__ import annotations

import functools
import os

from celery import Celery, signals

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
app.autodiscover_tasks(["dctoolkit.nodes.worker"])


@functools.cache
def settle_conf() -> None:
    """Copy every Celery setting into the app's own table (once; Django's settings are final by then).

    Celery looks several settings up for each message it sends, each time
    through Django's lazy settings object; settled, a lookup is one dict
    hit, and sending a scheduling pass's messages costs a third less.
    """
    app.conf.update({key: app.conf[key] for key in list(app.conf.keys())})


# --- remote control -----------------------------------------------------------
# What a node worker obeys from the broker: the read-only inspection Flower
# shows (its worker page also lists scheduled, reserved and revoked tasks:
# ids and a job's id and attempt, as `active` does), and the switch for the
# events it draws from.  Anyone who can write to the broker can broadcast,
# so shutdown, pool and consumer control, revoke, rate and time limits,
# `conf` (every setting) and the rest are refused: nothing of dctoolkit uses
# them (the database is the truth; a job is cancelled through it, and a node
# stops by a signal from its own machine).
OBEYED_CONTROL_COMMANDS = frozenset(
    {"ping", "stats", "registered", "active", "active_queues", "scheduled", "reserved", "revoked",
     "enable_events", "disable_events"}
)  # fmt: skip
REFUSAL = "refused: a dctoolkit node obeys only {obeyed} from the broker"


def restrict_remote_control(registry: dict) -> list[str]:
    """Replace every handler in `registry` (Celery's Panel.data) not in OBEYED_CONTROL_COMMANDS by a refusal.

    The refusal logs a warning and answers {"error": ...}, so whoever asked
    learns that it was refused, not lost.  Returns the refused names.
    """
    refused = sorted(name for name in registry if name not in OBEYED_CONTROL_COMMANDS)
    for name in refused:
        registry[name] = _refusal(name)
    return refused


def _refusal(name: str):
    import logging

    message = REFUSAL.format(obeyed=", ".join(sorted(OBEYED_CONTROL_COMMANDS)))
    log = logging.getLogger("dctoolkit.celery")

    def refuse(state, **kwargs) -> dict:
        log.warning("remote control command %r from the broker %s", name, message)
        return {"error": f"{name}: {message}"}

    # mypy: a marker attribute on the function; functions take attributes at run time.
    refuse.refused = True  # type: ignore[attr-defined]
    return refuse


@signals.worker_init.connect
def _restrict_worker(**kwargs) -> None:
    # Every built-in command is registered by now (the worker imported
    # celery.worker.control); the worker's mailbox reads this same dict.
    from celery.worker.control import Panel

    from dctoolkit.checks import refuse_to_start

    restrict_remote_control(Panel.data)
    # A node runs no management command, so the deployment checks run here:
    # with DCT_PRODUCTION=1, no node on a broker or database without a password.
    refuse_to_start("this node worker")
