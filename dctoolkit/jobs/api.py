"""The REST API under /api/: the same JSON shapes as `--json` (serializers.py), token or session auth.

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
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import schema
from .dispatch import wake_scheduler
from .history import FilterError, filter_jobs
from .ids import bounded_int
from .models import Job
from .outputs import list_outputs
from .ranges import CHUNK_BYTES, file_part, open_plain, ranged_file
from .serializers import jobs_payload
from .submission import MAX_NAME_BYTES, MAX_SUBMISSION_BYTES, SubmissionError, submission_too_big_message
from .submit import MAX_FILE_BYTES, UploadedFiles, prepare, queue
from .transitions import CONTROLS

# Jobs per page of GET /api/jobs/ (the contract's number).
PAGE_SIZE = 50
# The highest page number asked for (50 a page: 500 million jobs); more is a typing mistake.
MAX_PAGE = 10_000_000
# Most bytes of stdout/stderr one request with `offset` answers; X-Output-More says there is more.
OUTPUT_CHUNK_BYTES = 4 * 1024 * 1024
MAX_OFFSET = 2**62


def error(message: str, status: int) -> Response:
    return Response({"error": message}, status=status)


def visible_jobs(user) -> QuerySet[Job]:
    """The jobs `user` may see: their own, or every job for staff."""
    jobs = Job.objects.select_related("owner", "node")
    return jobs if user.is_staff else jobs.filter(owner=user)


def get_job(request: Request, job_id: int) -> Job:
    job = visible_jobs(request.user).filter(id=job_id).first()
    if job is None:
        raise Http404(f"no job {job_id} of yours")
    return job


def one_job(job: Job) -> dict:
    return jobs_payload([job], timezone.now())[0]


class JobsView(APIView):
    @extend_schema(
        operation_id="jobs_list",
        summary="List your jobs, newest first (finished ones included), 50 a page",
        parameters=[
            OpenApiParameter("state", str, description="only these states, comma-separated (queued,running)"),
            OpenApiParameter("page", int, description="page number, from 1"),
            OpenApiParameter("submission", int, description="only the jobs of this submission"),
            OpenApiParameter("name", str, description="only jobs whose name contains this"),
            OpenApiParameter("since", str, description="submitted at or after this date or ISO time"),
            OpenApiParameter("until", str, description="submitted before the end of this date, or this ISO time"),
            OpenApiParameter("all_users", bool, description="everyone's jobs (staff only)"),
        ],
        responses={200: schema.JobPageSerializer, 400: schema.ErrorSerializer, 403: schema.ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        if request.query_params.get("all_users") in ("1", "true", "True"):
            if not request.user.is_staff:
                return error("only staff see everyone's jobs; leave out all_users", 403)
            jobs = Job.objects.select_related("owner", "node")
        else:
            # mypy: the view requires authentication: request.user is a User.
            jobs = Job.objects.select_related("owner", "node").filter(owner=request.user)  # type: ignore[misc]
        try:
            jobs = filter_jobs(jobs, request.query_params)
        except FilterError as exc:
            return error(str(exc), 400)
        raw_page = (request.query_params.get("page") or "1").strip()
        page = bounded_int(raw_page, 1, MAX_PAGE)
        if page is None:
            if raw_page.isascii() and raw_page.isdigit() and raw_page.strip("0"):
                return error(f"page must be at most {MAX_PAGE:,} (50 jobs a page)", 400)
            return error("page must be a whole number of at least 1", 400)
        count = jobs.count()
        start = (page - 1) * PAGE_SIZE
        rows = list(jobs.order_by("-id")[start : start + PAGE_SIZE])
        next_url = None
        if start + PAGE_SIZE < count:
            params = request.query_params.copy()
            params["page"] = str(page + 1)
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response({"jobs": jobs_payload(rows, timezone.now()), "count": count, "next": next_url})

    @extend_schema(
        operation_id="jobs_submit",
        summary="Submit a submission file and the files it names",
        request={"multipart/form-data": schema.SubmitSerializer},
        responses={
            201: schema.JobListSerializer,
            400: schema.ErrorSerializer,
            413: schema.ErrorSerializer,
            415: schema.ErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
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
        by_name = {}
        for f in files:
            name = Path(f.name).name
            if name in by_name:
                return error(f"two files named '{name}'; send each file once", 400)
            by_name[name] = f
        try:
            text = upload.read().decode()
        except UnicodeDecodeError:
            return error(f"{upload.name}: the submission file is not text (UTF-8)", 400)
        try:
            # mypy: the view requires authentication: request.user is a User.
            jobs = queue(prepare(text, Path(upload.name).name or "job.txt", UploadedFiles(by_name)), request.user)  # type: ignore[arg-type]
        except SubmissionError as exc:
            return error(str(exc), 400)
        fresh = Job.objects.filter(id__in=[j.id for j in jobs]).select_related("owner", "node").order_by("id")
        return Response({"jobs": jobs_payload(fresh, timezone.now())}, status=201)


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


class JobView(APIView):
    @extend_schema(
        operation_id="jobs_get", summary="One job", responses={200: schema.JobSerializer, 404: schema.DetailSerializer}
    )
    def get(self, request: Request, job_id: int) -> Response:
        return Response(one_job(get_job(request, job_id)))


class ControlView(APIView):
    verb = ""  # a key of transitions.CONTROLS

    def act(self, request: Request, job_id: int) -> Response:
        job = get_job(request, job_id)
        control = CONTROLS[self.verb]
        if not control.act(job):
            job.refresh_from_db()
            return error(f"job {job.id} is {job.state}: {control.refusal}", 409)
        wake_scheduler()
        job.refresh_from_db()
        return Response(one_job(job))


def control_schema(verb: str):
    return extend_schema(
        summary=f"{verb.capitalize()} a job; answers the job after the change",
        operation_id=f"jobs_{verb}",
        request=None,
        responses={200: schema.JobSerializer, 404: schema.DetailSerializer, 409: schema.ErrorSerializer},
    )


class CancelView(ControlView):
    verb = "cancel"

    @control_schema("cancel")
    def post(self, request: Request, job_id: int) -> Response:
        return self.act(request, job_id)


class HoldView(ControlView):
    verb = "hold"

    @control_schema("hold")
    def post(self, request: Request, job_id: int) -> Response:
        return self.act(request, job_id)


class ReleaseView(ControlView):
    verb = "release"

    @control_schema("release")
    def post(self, request: Request, job_id: int) -> Response:
        return self.act(request, job_id)


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
            400: schema.ErrorSerializer,
            416: OpenApiResponse(description="the Range asks for no byte of the file"),
            404: schema.DetailSerializer,
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


class FilesView(APIView):
    @extend_schema(
        operation_id="jobs_files_list",
        summary="The job's output files",
        responses={200: schema.FileListSerializer, 404: schema.DetailSerializer},
    )
    def get(self, request: Request, job_id: int) -> Response:
        # Names that are not UTF-8 are left out (they cannot be JSON); the walk follows no link.
        return Response({"files": list_outputs(get_job(request, job_id).folder() / "outputs").files})


class FileView(APIView):
    @extend_schema(
        operation_id="jobs_file_get",
        summary="One output file (a path that leaves the job's folder is 404)",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            404: schema.DetailSerializer,
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
