"""The REST API under /api/: the same JSON shapes as `--json` (serializers.py), token or session auth.

A user sees and touches only their own jobs (another's answers 404, as if it
did not exist); staff see every job.  Errors a person reads come as
`{"error": "..."}` with 400 (bad submission), 409 (an action the job's state
refuses) or 413 (upload too big); DRF's own 401/404 carry `{"detail": "..."}`.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import schema
from .dispatch import wake_scheduler
from .history import FilterError, filter_jobs
from .models import Job
from .serializers import jobs_payload
from .submission import SubmissionError
from .submit import MAX_FILE_BYTES, UploadedFiles, prepare, queue
from .transitions import CONTROLS

# Jobs per page of GET /api/jobs/ (the contract's number).
PAGE_SIZE = 50


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
            jobs = Job.objects.select_related("owner", "node").filter(owner=request.user)
        try:
            jobs = filter_jobs(jobs, request.query_params)
            page = int(request.query_params.get("page") or 1)
            if page < 1:
                raise ValueError
        except FilterError as exc:
            return error(str(exc), 400)
        except ValueError:
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
            jobs = queue(prepare(text, Path(upload.name).name or "job.txt", UploadedFiles(by_name)), request.user)
        except SubmissionError as exc:
            return error(str(exc), 400)
        fresh = Job.objects.filter(id__in=[j.id for j in jobs]).select_related("owner", "node").order_by("id")
        return Response({"jobs": jobs_payload(fresh, timezone.now())}, status=201)


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
    """The job's stdout or stderr as text, from byte `offset` on (for following it while it runs)."""

    stream = "stdout"

    def read(self, request: Request, job_id: int) -> HttpResponse:
        job = get_job(request, job_id)
        try:
            offset = int(request.query_params.get("offset") or 0)
            if offset < 0:
                raise ValueError
        except ValueError:
            return error("offset must be a whole number of at least 0", 400)
        path = job.folder() / self.stream
        data = b""
        if path.is_file():
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        response = HttpResponse(data, content_type="text/plain; charset=utf-8")
        # The state as of before the read: a follower that sees a final state has read everything.
        response["X-Job-State"] = job.state
        return response


def output_schema(stream: str):
    return extend_schema(
        summary=f"The job's {stream} (empty before it starts)",
        operation_id=f"jobs_{stream}",
        parameters=[OpenApiParameter("offset", int, description="start at this byte (default 0)")],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR),
            400: schema.ErrorSerializer,
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
        outputs = get_job(request, job_id).folder() / "outputs"
        files = []
        if outputs.is_dir():
            for path in sorted(outputs.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    files.append({"path": path.relative_to(outputs).as_posix(), "size": path.stat().st_size})
        return Response({"files": files})


class FileView(APIView):
    @extend_schema(
        operation_id="jobs_file_get",
        summary="One output file (a path that leaves the job's folder is 404)",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            404: schema.DetailSerializer,
        },
    )
    def get(self, request: Request, job_id: int, path: str) -> FileResponse:
        outputs = (get_job(request, job_id).folder() / "outputs").resolve()
        # resolve() follows symlinks and `..`: whatever ends outside outputs/ does not exist.
        target = (outputs / path).resolve()
        if not target.is_relative_to(outputs) or not target.is_file():
            raise Http404(f"no output file '{path}'")
        return FileResponse(open(target, "rb"), as_attachment=True, filename=target.name)
