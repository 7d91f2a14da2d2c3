"""URLs of the REST API, mounted at /api/ (DESIGN.md, "Contract — HTTP API")."""

from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from dctoolkit.accounts.api import UsageView
from dctoolkit.jobs.web import api as jobs
from dctoolkit.jobs.web import bulk, dags
from dctoolkit.lib import ids
from dctoolkit.nodes.api import NodesView
from dctoolkit.operations.audit_web import AuditView

ids.register()  # <id:...>: a job id the database can hold, else the JSON 404 below


@csrf_exempt  # it changes nothing; a POST to a wrong address is 404, not a CSRF 403
def not_found(request: HttpRequest, rest: str) -> JsonResponse:
    """Any other /api/ address: a JSON 404 (not the portal's HTML page), as API clients expect."""
    return JsonResponse({"detail": f"no API endpoint at {request.path}; see /api/docs/"}, status=404)


# The ViewSet's methods mapped by hand, not by a router: the contract's addresses, and <id:...>.
job_view = jobs.JobViewSet.as_view

urlpatterns = [
    path("jobs/", job_view({"get": "list", "post": "create"}), name="api-jobs"),
    path("jobs/<id:job_id>/", job_view({"get": "retrieve", "patch": "partial_update"}), name="api-job"),
    *(path(f"jobs/{verb}/", bulk.VIEWS[f"many_{verb}"].as_view(), name=f"api-jobs-{verb}") for verb in bulk.VERBS),
    *(
        path(
            f"submissions/<id:submission_id>/{verb}/",
            bulk.VIEWS[f"submission_{verb}"].as_view(),
            name=f"api-submission-{verb}",
        )
        for verb in bulk.VERBS
    ),
    path(
        "submissions/<id:submission_id>/resubmit/",
        jobs.SubmissionResubmitView.as_view(),
        name="api-submission-resubmit",
    ),
    path("jobs/<id:job_id>/resubmit/", job_view({"post": "resubmit"}), name="api-job-resubmit"),
    path("jobs/<id:job_id>/cancel/", job_view({"post": "cancel"}), name="api-job-cancel"),
    path("jobs/<id:job_id>/hold/", job_view({"post": "hold"}), name="api-job-hold"),
    path("jobs/<id:job_id>/release/", job_view({"post": "release"}), name="api-job-release"),
    path("jobs/<id:job_id>/stdout", jobs.StdoutView.as_view(), name="api-job-stdout"),
    path("jobs/<id:job_id>/stderr", jobs.StderrView.as_view(), name="api-job-stderr"),
    path("jobs/<id:job_id>/files/", job_view({"get": "files"}), name="api-job-files"),
    path("jobs/<id:job_id>/files/<path:path>", jobs.FileView.as_view(), name="api-job-file"),
    path("dags/<id:dag_id>/", dags.DagView.as_view(), name="api-dag"),
    path("dags/<id:dag_id>/rerun/", dags.DagRerunView.as_view(), name="api-dag-rerun"),
    path("nodes/", NodesView.as_view(), name="api-nodes"),
    path("usage/", UsageView.as_view(), name="api-usage"),
    path("audit/", AuditView.as_view(), name="api-audit"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    re_path(r"^(?P<rest>[\s\S]*)$", not_found),  # [\s\S]: a newline in the path too
]
