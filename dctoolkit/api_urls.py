"""URLs of the REST API, mounted at /api/ (DESIGN.md, "Contract — HTTP API")."""

from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from dctoolkit.accounts.api import UsageView
from dctoolkit.jobs import api as jobs
from dctoolkit.jobs import ids
from dctoolkit.nodes.api import NodesView

ids.register()  # <id:...>: a job id the database can hold, else the JSON 404 below


@csrf_exempt  # it changes nothing; a POST to a wrong address is 404, not a CSRF 403
def not_found(request: HttpRequest, rest: str) -> JsonResponse:
    """Any other /api/ address: a JSON 404 (not the portal's HTML page), as API clients expect."""
    return JsonResponse({"detail": f"no API endpoint at {request.path}; see /api/docs/"}, status=404)


urlpatterns = [
    path("jobs/", jobs.JobsView.as_view(), name="api-jobs"),
    path("jobs/<id:job_id>/", jobs.JobView.as_view(), name="api-job"),
    path("jobs/<id:job_id>/cancel/", jobs.CancelView.as_view(), name="api-job-cancel"),
    path("jobs/<id:job_id>/hold/", jobs.HoldView.as_view(), name="api-job-hold"),
    path("jobs/<id:job_id>/release/", jobs.ReleaseView.as_view(), name="api-job-release"),
    path("jobs/<id:job_id>/stdout", jobs.StdoutView.as_view(), name="api-job-stdout"),
    path("jobs/<id:job_id>/stderr", jobs.StderrView.as_view(), name="api-job-stderr"),
    path("jobs/<id:job_id>/files/", jobs.FilesView.as_view(), name="api-job-files"),
    path("jobs/<id:job_id>/files/<path:path>", jobs.FileView.as_view(), name="api-job-file"),
    path("nodes/", NodesView.as_view(), name="api-nodes"),
    path("usage/", UsageView.as_view(), name="api-usage"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    re_path(r"^(?P<rest>[\s\S]*)$", not_found),  # [\s\S]: a newline in the path too
]
