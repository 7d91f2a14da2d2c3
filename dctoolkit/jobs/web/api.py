"""The REST API under /api/: the JSON shapes of serializers.py (as `--json`), token or session auth.

A user sees and touches only their own jobs (another's answers 404, as if it
did not exist); staff see every job.  Errors a person reads come as
`{"error": "..."}` with 400 (bad submission), 409 (an action the job's state
refuses) or 413 (upload too big); DRF's own 401/404 carry `{"detail": "..."}`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from dctoolkit.jobs.intake.again import (
    AgainError,
    edit_jobs,
    resubmit_jobs,
    resubmit_submission,
    user_submission,
    wrong_state,
)
from dctoolkit.jobs.intake.dag import is_dag
from dctoolkit.jobs.intake.dagqueue import prepare_dag
from dctoolkit.jobs.intake.parse import (
    MAX_NAME_BYTES,
    MAX_SUBMISSION_BYTES,
    SubmissionError,
    submission_too_big_message,
)
from dctoolkit.jobs.intake.queue import MAX_FILE_BYTES, UploadedFiles, prepare, queue
from dctoolkit.jobs.models import WAITING_STATES, Job, JobState
from dctoolkit.jobs.scheduling.dagman import submit_dag
from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.jobs.selection import act_on_job
from dctoolkit.jobs.transitions import CONTROLS
from dctoolkit.jobs.web.history import FilterError, asked_ids, filter_jobs
from dctoolkit.jobs.web.outputs import job_outputs
from dctoolkit.jobs.web.serializers import (
    DetailSerializer,
    ErrorSerializer,
    FileListSerializer,
    JobListSerializer,
    JobSerializer,
    SubmitSerializer,
    jobs_payload,
    output_files_payload,
)
from dctoolkit.jobs.web.uploads import UploadError, keyed_uploads, sent_folders
from dctoolkit.lib.ids import bounded_int
from dctoolkit.lib.pages import Page, read_page
from dctoolkit.lib.ranges import CHUNK_BYTES, file_part, open_plain, ranged_file

# Jobs per page of GET /api/jobs/ (the contract's number).
PAGE_SIZE = 50
# The highest page number asked for (50 a page: 500 million jobs); more is a typing mistake.
MAX_PAGE = 10_000_000
# Most bytes of stdout/stderr one request with `offset` answers; X-Output-More says there is more.
OUTPUT_CHUNK_BYTES = 4 * 1024 * 1024
MAX_OFFSET = 2**62


def queue_upload(text: str, name: str, files: UploadedFiles, user: Any) -> Response:
    """POST /api/jobs/ once the upload is read: 201 `{"jobs": [...]}`, or for a DAG file (its submit files
    and theirs come as `files`) 201 `{"dag": ID, "jobs": [...]}` with its first nodes' jobs; 400 when refused."""
    try:
        if is_dag(text):
            dag, jobs = submit_dag(prepare_dag(text, name, files), user, timezone.now())
            return Response({"dag": dag.id, "jobs": jobs_payload(jobs, timezone.now())}, status=201)
        jobs = queue(prepare(text, name, files), user)
    except SubmissionError as exc:
        return error(str(exc), 400)
    fresh = Job.objects.filter(id__in=[j.id for j in jobs]).select_related("owner", "node").order_by("id")
    return Response({"jobs": jobs_payload(fresh, timezone.now())}, status=201)


def error(message: str, status: int) -> Response:
    return Response({"error": message}, status=status)


class PageError(APIException):
    """A `page` that is not a page number: 400 with the contract's `{"error": ...}`."""

    status_code = 400

    def __init__(self, message: str) -> None:
        # A dict detail is the whole body (DRF's exception handler).
        # mypy: the stubs allow only ErrorDetail values; a str is written out the same.
        self.detail = {"error": message}  # type: ignore[dict-item]


class JobPagination(BasePagination):
    """`{"jobs": [...], "count": N, "next": URL or null}`, PAGE_SIZE a page, `?page=` from 1.

    A page reads PAGE_SIZE + 1 rows (the extra one says whether `next`
    exists) and counts with the capped count of `pages` (exact up to 10,000);
    `count` is the contract's exact number (DESIGN.md: `"count": N`), so past
    the cap it is counted whole, once, by the owner index (see `paginated`).
    Not PageNumberPagination: that answers a page past the end with 404 (here
    an empty list) and writes `next` with its query sorted (here the caller's
    query as sent, `page` replaced).
    """

    page_size = PAGE_SIZE

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list:
        raw = (request.query_params.get("page") or "1").strip()
        number = bounded_int(raw, 1, MAX_PAGE)
        if number is None:
            if raw.isascii() and raw.isdigit() and raw.strip("0"):
                raise PageError(f"page must be at most {MAX_PAGE:,} (50 jobs a page)")
            raise PageError("page must be a whole number of at least 1")
        self.request = request
        self.page = read_page(queryset, number, self.page_size)
        self.rows = queryset
        return self.page.object_list

    def get_next_link(self) -> str | None:
        if not self.page.has_next:
            return None
        params = self.request.query_params.copy()
        params["page"] = str(self.page.next_page_number)
        return self.request.build_absolute_uri(f"{self.request.path}?{params.urlencode()}")

    def get_paginated_response(self, data: list) -> Response:
        return Response({"jobs": data, "count": exact_count(self.page, self.rows), "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["jobs", "count", "next"],
            "properties": {
                "jobs": schema,
                "count": {"type": "integer", "description": "jobs on every page together"},
                "next": {
                    "type": "string",
                    "format": "uri",
                    "nullable": True,
                    "description": "the next page, or null on the last",
                },
            },
        }


def exact_count(page: Page, rows: QuerySet) -> int:
    """The page's count when exact (up to the cap, or worked out on the last page), else one whole COUNT."""
    return page.count if page.exact else rows.order_by().count()


def get_job(request: Request, job_id: int) -> Job:
    job = Job.objects.visible_to(request.user).select_related("owner", "node").filter(id=job_id).first()
    if job is None:
        raise Http404(f"no job {job_id} of yours")
    return job


def one_job(job: Job) -> dict:
    return jobs_payload([job], timezone.now())[0]


def control_schema(verb: str):
    return extend_schema(
        summary=f"{verb.capitalize()} a job; answers the job after the change",
        operation_id=f"jobs_{verb}",
        request=None,
        responses={200: JobSerializer, 404: DetailSerializer, 409: ErrorSerializer},
    )


# /api/jobs/: list and submit; /api/jobs/{id}/: one job, its actions (cancel, hold, release) and files.
#
# api_urls.py maps each method to the contract's address itself (no
# router), so that the addresses and the `<id:...>` converter stay as they
# are; a new action is a method with `@action` and one line there.
class JobViewSet(ViewSet):
    pagination_class = JobPagination

    @extend_schema(
        operation_id="jobs_list",
        summary="List your jobs, newest first (finished ones included), 50 a page",
        parameters=[
            OpenApiParameter(
                "id", str, description="only these jobs, comma-separated (12,13,14; at most 1000): all on one page"
            ),
            OpenApiParameter("state", str, description="only these states, comma-separated (queued,running)"),
            OpenApiParameter("page", int, description="page number, from 1"),
            OpenApiParameter("submission", int, description="only the jobs of this submission"),
            OpenApiParameter("name", str, description="only jobs whose name contains this"),
            OpenApiParameter("since", str, description="submitted at or after this date or ISO time"),
            OpenApiParameter("until", str, description="submitted before the end of this date, or this ISO time"),
            OpenApiParameter("all_users", bool, description="everyone's jobs (staff only)"),
        ],
        responses={200: JobSerializer(many=True), 400: ErrorSerializer, 403: ErrorSerializer},
    )
    def list(self, request: Request) -> Response:
        jobs: QuerySet[Job] = Job.objects.select_related("owner", "node")
        if request.query_params.get("all_users") in ("1", "true", "True"):
            if not request.user.is_staff:
                return error("only staff see everyone's jobs; leave out all_users", 403)
            jobs = Job.objects.visible_to(request.user).select_related("owner", "node")
        else:
            # Staff too list only their own unless they ask for everyone's.
            jobs = jobs.filter(owner=request.user)  # type: ignore[misc]
        try:
            jobs = filter_jobs(jobs, request.query_params)
            ids = asked_ids(request.query_params)
        except FilterError as exc:
            return error(str(exc), 400)
        paginator = self.pagination_class()
        if ids:  # a workflow tool's poll: every job it asked for, on one page
            paginator.page_size = max(PAGE_SIZE, len(ids))
        rows = paginator.paginate_queryset(jobs.order_by("-id"), request, self)
        return paginator.get_paginated_response(jobs_payload(rows, timezone.now()))

    @extend_schema(
        operation_id="jobs_submit",
        summary="Submit a submission file and the files it names",
        request={"multipart/form-data": SubmitSerializer},
        responses={
            201: JobListSerializer,
            400: ErrorSerializer,
            413: ErrorSerializer,
            415: ErrorSerializer,
        },
    )
    def create(self, request: Request) -> Response:
        limit = settings.DCT_MAX_UPLOAD_MB * 1024 * 1024
        # Refuse before reading the body when the client says how big it is.
        if declared_length(request) > limit:
            return too_big()
        try:
            upload = request.FILES.get("submission")
            files = request.FILES.getlist("files")
        except ParseError as exc:
            return error(f"the upload is not readable multipart/form-data ({exc.detail})", 400)
        except UnsupportedMediaType as exc:
            return error(
                f"{exc.detail}; send multipart/form-data: the field 'submission' and one 'files' field per file", 415
            )
        except TooManyFilesSent:
            return error(
                f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files in one upload; "
                "pack them into an archive and unpack it in the job",
                413,
            )
        except TooManyFieldsSent:
            return error(
                f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields in one upload; send one 'paths' field "
                "per file at most, and pack many files into an archive",
                413,
            )
        except RequestDataTooBig:
            return too_big()
        if upload is None:
            return error("send the submission file in the multipart field 'submission'", 400)
        if sum(f.size for f in [upload, *files]) > limit or any(f.size > MAX_FILE_BYTES for f in files):
            return too_big()
        if upload.size > MAX_SUBMISSION_BYTES:  # refused before a byte of it is read
            return error(f"{Path(upload.name).name[:100]}: {submission_too_big_message(upload.size)}", 413)
        for f in [upload, *files]:
            problem = name_problem(f.name)
            if problem:
                return error(problem, 400)
        try:
            by_key = keyed_uploads(files, [f.name or "" for f in files], request.POST.getlist("paths"))
            folders = sent_folders(request.POST.getlist("dirs"), by_key)
        except UploadError as exc:
            return error(str(exc), 400)
        try:
            text = upload.read().decode()
        except UnicodeDecodeError:
            return error(f"{upload.name}: the submission file is not text (UTF-8)", 400)
        return queue_upload(text, Path(upload.name).name or "job.txt", UploadedFiles(by_key, folders), request.user)

    @extend_schema(operation_id="jobs_get", summary="One job", responses={200: JobSerializer, 404: DetailSerializer})
    def retrieve(self, request: Request, job_id: int) -> Response:
        return Response(one_job(get_job(request, job_id)))

    def control(self, request: Request, job_id: int, verb: str) -> Response:
        """cancel / hold / release (a key of transitions.CONTROLS): the job after it, or 409 with why not."""
        job = get_job(request, job_id)
        control = CONTROLS[verb]
        if not act_on_job(verb, job, actor=request.user):
            job.refresh_from_db()
            return error(control.refusal_for(job), 409)
        wake_scheduler()
        job.refresh_from_db()
        return Response(one_job(job))

    @control_schema("cancel")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, job_id: int) -> Response:
        return self.control(request, job_id, "cancel")

    @control_schema("hold")
    @action(detail=True, methods=["post"])
    def hold(self, request: Request, job_id: int) -> Response:
        return self.control(request, job_id, "hold")

    @control_schema("release")
    @action(detail=True, methods=["post"])
    def release(self, request: Request, job_id: int) -> Response:
        return self.control(request, job_id, "release")

    @extend_schema(
        operation_id="jobs_edit",
        summary="Change a waiting, queued or held job (request_cpus, request_memory, name, node, labels, ...)",
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: JobSerializer, 400: ErrorSerializer, 404: DetailSerializer, 409: ErrorSerializer},
    )
    def partial_update(self, request: Request, job_id: int) -> Response:
        job = get_job(request, job_id)
        if not isinstance(request.data, dict) or not request.data:
            return error('send a JSON object of the fields to change, such as {"request_memory": "4G"}', 400)
        if job.state not in WAITING_STATES:
            return error(wrong_state(job), 409)
        pairs = {str(k): ", ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in request.data.items()}
        try:
            _, failures = edit_jobs([job], pairs, actor=request.user)
        except AgainError as exc:
            return error(str(exc), 400)
        if failures:
            return error(failures[job.pk], 409)
        job.refresh_from_db()
        return Response(one_job(job))

    @extend_schema(
        operation_id="jobs_resubmit",
        summary="Queue a new job from the same submission text and staged files",
        request={"application/json": OpenApiTypes.OBJECT},
        responses={201: JobListSerializer, 404: DetailSerializer, 409: ErrorSerializer},
    )
    @action(detail=True, methods=["post"])
    def resubmit(self, request: Request, job_id: int) -> Response:
        job = get_job(request, job_id)
        if failed_asked(request) and job.state != JobState.FAILED:
            return error(f"job {job.pk} is {job.state}, not failed; leave out failed to submit it again", 409)
        return new_jobs(lambda: resubmit_jobs([job], actor=request.user))

    @extend_schema(
        operation_id="jobs_files_list",
        summary="The job's output files",
        responses={200: FileListSerializer, 404: DetailSerializer},
    )
    @action(detail=True, methods=["get"])
    def files(self, request: Request, job_id: int) -> Response:
        # Names that are not UTF-8 are left out (they cannot be JSON); the walk follows no link.
        return Response({"files": output_files_payload(job_outputs(get_job(request, job_id)).files)})


def failed_asked(request: Request) -> bool:
    data = request.data if isinstance(request.data, dict) else {}
    return data.get("failed") in (True, "true", "1", 1)


def new_jobs(make: Any) -> Response:
    """201 with the new jobs `make()` queued, or 409 with why not (purged files, no failed jobs)."""
    try:
        jobs = make()
    except AgainError as exc:
        return error(str(exc), 409)
    fresh = Job.objects.filter(id__in=[j.id for j in jobs]).select_related("owner", "node").order_by("id")
    return Response({"jobs": jobs_payload(fresh, timezone.now())}, status=201)


class SubmissionResubmitView(APIView):
    @extend_schema(
        operation_id="submissions_resubmit",
        summary='Queue a submission again (body {"failed": true}: only its failed jobs)',
        request={"application/json": OpenApiTypes.OBJECT},
        responses={201: JobListSerializer, 404: DetailSerializer, 409: ErrorSerializer},
    )
    def post(self, request: Request, submission_id: int) -> Response:
        try:
            # mypy: the view requires authentication: request.user is a User.
            sub = user_submission(request.user, submission_id)  # type: ignore[arg-type]
        except AgainError as exc:
            raise Http404(str(exc)) from None
        failed = failed_asked(request)
        return new_jobs(lambda: resubmit_submission(sub, failed=failed, actor=request.user))


def name_problem(name: str) -> str | None:
    """Why an uploaded file's name cannot be stored (longer than a file system takes), or None."""
    name = Path(name).name
    size = len(name.encode(errors="replace"))
    if size > MAX_NAME_BYTES:
        return (
            f"the uploaded file name '{name[:40]}…' is {size:,} bytes; "
            f"the limit is {MAX_NAME_BYTES} bytes; rename the file"
        )
    return None


def declared_length(request: Request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def too_big() -> Response:
    return error(
        f"the upload is larger than the limit of {settings.DCT_MAX_UPLOAD_MB} MB; "
        "send smaller files, or ask the administrator to raise DCT_MAX_UPLOAD_MB",
        413,
    )


class OutputView(APIView):
    """The job's stdout or stderr as text, streamed: whole, one HTTP Range, or from byte `offset` on.

    With `offset` (for following it while it runs) at most OUTPUT_CHUNK_BYTES
    come back; `X-Output-More: true` says more is there already (ask again
    from offset + what came), and X-Output-Size is the file's size.
    """

    stream = "stdout"

    def read(self, request: Request, job_id: int) -> HttpResponse:
        job = get_job(request, job_id)
        raw = request.query_params.get("offset")
        offset = bounded_int(raw or "0", 0, MAX_OFFSET)
        if offset is None:
            return error("offset must be a whole number of at least 0 (a byte position in the file)", 400)
        # The state as of before the read: a follower that sees a final state has read everything.
        state = job.state
        fd = open_plain(job.folder() / self.stream)
        kind: dict[str, Any] = {"content_type": "text/plain; charset=utf-8", "buffer_up_to": CHUNK_BYTES}
        if raw is None or request.headers.get("Range"):
            response = ranged_file(fd, request.headers.get("Range"), **kind)
        else:
            size = os.fstat(fd).st_size if fd is not None else 0
            length = max(0, min(size - offset, OUTPUT_CHUNK_BYTES))
            response = file_part(fd, offset, length, **kind)
            response["X-Output-Size"] = str(size)
            if offset + length < size:
                response["X-Output-More"] = "true"
        response["X-Job-State"] = state
        return response


def output_schema(stream: str):
    return extend_schema(
        summary=f"The job's {stream} (empty before it starts)",
        operation_id=f"jobs_{stream}",
        parameters=[
            OpenApiParameter(
                "offset", int, description="start at this byte; at most 4 MB come back (X-Output-More: true: ask again)"
            ),
            OpenApiParameter("Range", str, OpenApiParameter.HEADER, description="bytes=FIRST-LAST, FIRST- or -LAST_N"),
        ],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR),
            (206, "text/plain"): OpenApiResponse(OpenApiTypes.STR),
            400: ErrorSerializer,
            416: OpenApiResponse(description="the Range asks for no byte of the file"),
            404: DetailSerializer,
        },
    )


class StdoutView(OutputView):
    stream = "stdout"

    @output_schema("stdout")
    def get(self, request: Request, job_id: int) -> HttpResponse:
        return self.read(request, job_id)


class StderrView(OutputView):
    stream = "stderr"

    @output_schema("stderr")
    def get(self, request: Request, job_id: int) -> HttpResponse:
        return self.read(request, job_id)


class FileView(APIView):
    @extend_schema(
        operation_id="jobs_file_get",
        summary="One output file (a path that leaves the job's folder is 404)",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            404: DetailSerializer,
        },
    )
    def get(self, request: Request, job_id: int, path: str) -> HttpResponse:
        outputs = (get_job(request, job_id).folder() / "outputs").resolve()
        # resolve() follows symlinks and `..`: whatever ends outside outputs/ does not exist.
        target = (outputs / path).resolve()
        fd = open_plain(target) if target.is_relative_to(outputs) else None
        if fd is None:
            raise Http404(f"no output file '{path[:200]}'")
        response = ranged_file(fd, request.headers.get("Range"), content_type="application/octet-stream")
        # mypy: content_disposition_header() returns None only for as_attachment=False without a file name.
        response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=target.name)  # type: ignore[assignment]
        return response
