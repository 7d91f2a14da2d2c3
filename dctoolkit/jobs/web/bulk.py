"""Acting on many jobs through the API: a submission's jobs, or any selection, in one UPDATE.

    POST /api/submissions/{id}/cancel/   (hold/, release/)     -> 200 {"jobs": [...]}, the changed jobs
    POST /api/jobs/cancel/               (hold/, release/)     body {"jobs": "12,100-199", "submission": S,
                                                                     "name": GLOB, "state": S, "all": true}

Another user's submission answers 404, as if it did not exist (staff reach
any).  Kept apart from api.py so that the per-job views stay as they are.
"""

from __future__ import annotations

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.selection import Selection, SelectionError, act_on_selection, jobs_to_act_on, parse_ids, parse_state
from dctoolkit.jobs.transitions import CONTROLS
from dctoolkit.jobs.web.serializers import DetailSerializer, ErrorSerializer, JobListSerializer, jobs_payload


def answer(verb: str, request: Request, selection: Selection) -> Response:
    """Act, and answer the changed jobs in their new state."""
    try:
        jobs = jobs_to_act_on(request.user, selection)
    except SelectionError as exc:
        raise Http404(str(exc)) from None
    now = timezone.now()
    changed = act_on_selection(verb, jobs, selection, now, actor=request.user)
    wake_scheduler()
    return Response({"jobs": jobs_payload(changed, timezone.now())})


def selection_from(body: object) -> Selection:
    """The selectors of a request body; SelectionError naming the field that is wrong."""
    if not isinstance(body, dict):
        raise SelectionError('send a JSON object: {"jobs": "12,100-199", "submission": S, "name": GLOB, ...}')
    unknown = sorted(set(body) - {"jobs", "submission", "name", "state", "all"})
    if unknown:
        raise SelectionError(f"unknown field {unknown[0]!r}; the fields are jobs, submission, name, state, all")
    jobs = body.get("jobs") or ""
    ids, ranges = parse_ids(jobs if isinstance(jobs, list) else [str(jobs)])
    submission = parse_ids([str(body["submission"])])[0] if body.get("submission") not in (None, "") else ()
    if len(submission) > 1:
        raise SelectionError("submission: give one submission id")
    name, state = body.get("name") or "", body.get("state") or ""
    if not isinstance(name, str) or not isinstance(state, str):
        raise SelectionError("name and state are strings")
    selection = Selection(ids, ranges, submission[0] if submission else None, name,
                          parse_state(state) if state else "", bool(body.get("all")))  # fmt: skip
    if not selection.names_jobs and not selection.everything:
        raise SelectionError('which jobs? give "jobs", "submission", "name", "state" or "all": true')
    return selection


def many_schema(verb: str, scope: str):
    return extend_schema(
        summary=f"{verb.capitalize()} {scope} in one step; answers the jobs that changed, in their new state",
        operation_id=f"{'submissions' if 'submission' in scope else 'jobs_many'}_{verb}",
        request=None,
        responses={200: JobListSerializer, 400: ErrorSerializer, 404: DetailSerializer},
    )


class SubmissionControlView(APIView):
    verb = ""  # a key of transitions.CONTROLS

    def act(self, request: Request, submission_id: int) -> Response:
        return answer(self.verb, request, Selection(submission=submission_id))


class ManyControlView(APIView):
    verb = ""

    def act(self, request: Request) -> Response:
        try:
            selection = selection_from(request.data)
        except SelectionError as exc:
            return Response({"error": str(exc)}, status=400)
        return answer(self.verb, request, selection)


def _views() -> dict[str, type[APIView]]:
    made: dict[str, type[APIView]] = {}
    for verb in CONTROLS:

        @many_schema(verb, "every job of a submission")
        def post_submission(self, request: Request, submission_id: int) -> Response:
            return self.act(request, submission_id)

        @many_schema(verb, "the jobs a selection names")
        def post_many(self, request: Request) -> Response:
            return self.act(request)

        made[f"submission_{verb}"] = type(
            f"Submission{verb.capitalize()}View", (SubmissionControlView,), {"verb": verb, "post": post_submission}
        )
        made[f"many_{verb}"] = type(
            f"Many{verb.capitalize()}View", (ManyControlView,), {"verb": verb, "post": post_many}
        )
    return made


VIEWS = _views()
VERBS = tuple(CONTROLS)
