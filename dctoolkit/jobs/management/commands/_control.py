"""Shared body of cancel / hold / release (locally, or through the API with DCT_SERVER).

Ids and ranges add up; `--submission`, `--name`, `--state` narrow them (or
select on their own); `--all` takes every job of the acting user.  Locally the
action is one UPDATE however many jobs it changes (transitions.*_jobs).
"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.cli import DctCommand
from dctoolkit.jobs.models import Job
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.selection import (
    Selection,
    SelectionError,
    act_on_selection,
    jobs_to_act_on,
    parse_ids,
    parse_state,
)
from dctoolkit.jobs.transitions import CONTROLS, Control


class ControlCommand(DctCommand):
    verb = ""  # a key of transitions.CONTROLS
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", metavar="ID", help="job ids and ranges of ids (100-199); they add up")
        parser.add_argument("--submission", metavar="S", help="the jobs of submission S (its $(Cluster))")
        parser.add_argument("--name", metavar="GLOB", help="jobs whose name matches GLOB (*, ?, [abc])")
        parser.add_argument("--state", metavar="STATE", help="jobs in STATE (queued, held, running, ...)")
        parser.add_argument(
            "--all", dest="everything", action="store_true", help="every one of your jobs that has not ended"
        )

    def handle(self, *args, **options):
        control = CONTROLS[self.verb]
        selection = self.selection(options)
        if self.remote:
            rows, failures = self.remote_control(selection)
        else:
            rows, failures = self.control_locally(control, selection)
        changed = [row for row in rows if row["id"] not in failures]
        if options["json"]:
            self.emit_json({"jobs": changed})
        elif selection.ids and selection == Selection(ids=selection.ids):
            for row in changed:  # jobs named one by one: one line each, as before
                self.stdout.write(f"job {row['id']}: {control.done}")
        else:
            self.stdout.write(f"{len(changed)} job{'' if len(changed) == 1 else 's'} {control.done}")
        if failures:
            raise CommandError("; ".join(failures.values()))

    def selection(self, options) -> Selection:
        try:
            ids, ranges = parse_ids(options["ids"])
            submission = parse_ids([options["submission"]])[0] if options["submission"] else ()
            if options["submission"] and len(submission) != 1:
                raise SelectionError(f"--submission {options['submission']}: give one submission id")
            state = parse_state(options["state"]) if options["state"] else ""
        except SelectionError as exc:
            raise CommandError(str(exc)) from None
        selection = Selection(
            ids=ids,
            ranges=ranges,
            submission=submission[0] if submission else None,
            name=options["name"] or "",
            state=state,
            everything=options["everything"],
        )
        if not selection.names_jobs and not selection.everything:
            raise CommandError(
                f"{self.verb}: which jobs? give ids, ranges (100-199), --submission S, --name GLOB, --state STATE "
                "or --all"
            )
        return selection

    def remote_control(self, selection: Selection) -> tuple[list[dict], dict[int, str]]:
        # mypy: handle() calls this only when self.remote is set.
        remote = self.remote
        assert remote is not None
        if selection == Selection(ids=selection.ids):
            return remote.control(self.verb, list(selection.ids))
        return remote.control_many(self.verb, selectors_body(self.options)), {}

    def control_locally(self, control: Control, selection: Selection) -> tuple[list[dict], dict[int, str]]:
        user = self.acting_user()
        named = [self.user_job(i, user) for i in selection.ids]  # each id must be the user's before any is touched
        try:
            jobs = jobs_to_act_on(user, selection)
        except SelectionError as exc:
            raise CommandError(str(exc)) from None
        now = timezone.now()
        changed = act_on_selection(self.verb, jobs, selection, now, actor=user)
        wake_scheduler()
        done = {job.id for job in changed}
        failures = {}
        for job in named:
            if job.id not in done:
                job.refresh_from_db()
                failures[job.id] = control.refusal_for(job)
        unchanged = Job.objects.filter(id__in=list(failures)).select_related("owner", "node")
        touched = sorted([*changed, *unchanged], key=lambda j: j.id)
        if not self.options["json"]:  # only the ids are printed: no serializers (REST framework: most of a second)
            return [{"id": job.id} for job in touched], failures
        from dctoolkit.jobs.web.serializers import jobs_payload

        return jobs_payload(touched, timezone.now()), failures


def selectors_body(options: dict) -> dict:
    """The selectors as POST /api/jobs/VERB/ takes them (the server checks them again)."""
    return {
        "jobs": ",".join(options["ids"]),
        "submission": options["submission"],
        "name": options["name"] or "",
        "state": options["state"] or "",
        "all": options["everything"],
    }
