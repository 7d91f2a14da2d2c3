"""./dct scheduler: the control loop (one or more may run; passes never overlap)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from django.db import close_old_connections
from django.utils import timezone

from dctoolkit.cli import DctCommand
from dctoolkit.jobs.scheduling import dagman, dispatch, housekeeping, wake
from dctoolkit.lib.fastsql import reuse_connection
from dctoolkit.operations.passes import PassStats, stats_client

log = logging.getLogger("dctoolkit.scheduler")

# Longest sleep between passes when nothing wakes the scheduler; also the
# pace of the liveness sweep, the re-send of lost messages and mail.
IDLE_SECONDS = 1.0
# How often the jobs' periodic policy expressions are evaluated (HTCondor's PERIODIC_EXPR_INTERVAL, 60 s
# there): often enough that a release is prompt, rarely enough that thousands of held jobs with one cost
# little (about 50 microseconds each, measured for OSG's periodic_release).
POLICY_INTERVAL_SECONDS = 5.0


class Command(DctCommand):
    help = "Run the scheduler: dispatch queued jobs, watch node liveness, re-send lost messages."
    json_option = False
    user_option = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Each pass's duration and placements, for /metrics: summed here, written with the chores.
        self.pass_stats = PassStats()
        self.outcomes_recorded: Counter[str] = Counter()  # of dispatch.OUTCOMES, handed to pass_stats so far
        self.policies_at = -POLICY_INTERVAL_SECONDS

    def job_policies(self, now: datetime) -> int:
        """`housekeeping.apply_job_policies`, at most once per POLICY_INTERVAL_SECONDS."""
        if time.monotonic() - self.policies_at < POLICY_INTERVAL_SECONDS:
            return 0
        self.policies_at = time.monotonic()
        return housekeeping.apply_job_policies(now)

    def chore_steps(self) -> tuple[Callable[[datetime], int], ...]:
        """A chores round's steps in their order, the scheduling pass among them; each takes `now` and
        returns how much it did."""
        return (
            housekeeping.sweep_lost_nodes,
            housekeeping.resend_stale,
            housekeeping.resolve_dependencies,
            dagman.advance_dags,
            housekeeping.queue_due_retries,
            housekeeping.release_waiting,
            self.job_policies,
            dispatch.schedule_pass,
            notify_step,
            housekeeping.purge_expired_files,
        )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run one round of every step and exit")

    def handle(self, *args, **options):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        log.info("scheduler started")
        last_housekeeping = -IDLE_SECONDS
        while not stop.is_set():
            due = time.monotonic() - last_housekeeping >= IDLE_SECONDS
            if due:
                last_housekeeping = time.monotonic()
            busy = self.round(chores=due or options["once"])
            if options["once"]:
                break
            if not busy:
                wake.wait_for_wake(IDLE_SECONDS)
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(dispatch.OUTCOMES.items()))
        log.info("scheduler stopped; its passes: %s", outcomes or "none")

    def round(self, chores: bool = True) -> bool:
        """One round of the steps; True when another should come at once.

        The scheduling pass runs every round; the steps that watch the clock
        (lost nodes, lost messages, dependencies, mail) with `chores` only, at most
        once per IDLE_SECONDS, so that a busy queue's rounds stay cheap.
        A housekeeping step that did work (requeued jobs, re-sent messages)
        calls for another pass at once.  A pass that placed jobs does not:
        it filled every slot it could, and whatever frees or adds one (a
        job's end, a submit, a release) wakes the scheduler.
        """
        # The connection's health check (a `SELECT 1`) once per IDLE_SECONDS, not before every pass of a busy
        # queue: a pass on a connection that died meanwhile fails, is logged, and the next round reconnects.
        if chores:
            close_old_connections()
        else:
            reuse_connection()
        again = False
        for step in self.chore_steps() if chores else (dispatch.schedule_pass,):
            started = time.perf_counter()
            try:
                did = step(timezone.now())
            except Exception:  # the database or Redis away: logged, retried next round
                log.exception("scheduler step %s failed; retrying", step.__name__)
                close_old_connections()
                continue
            if step is dispatch.schedule_pass:
                self.pass_stats.record(time.perf_counter() - started, did)
            again = again or (did > 0 and step is not dispatch.schedule_pass)
        if chores:
            self.pass_stats.record_outcomes(dispatch.OUTCOMES - self.outcomes_recorded)
            self.outcomes_recorded = dispatch.OUTCOMES.copy()
            self.pass_stats.flush(stats_client())
        return again


def notify_step(now) -> int:
    from dctoolkit.jobs.notify import send_due

    return send_due(now)
