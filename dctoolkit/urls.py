"""URLs: the portal, accounts, the API and the admin."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dctoolkit.accounts import views as account_views
from dctoolkit.jobs.web import batches, dags, rerun
from dctoolkit.jobs.web import views as job_views
from dctoolkit.lib import ids
from dctoolkit.nodes import views as node_views
from dctoolkit.operations import audit_web, metrics

ids.register()  # <id:...>: a job id the database can hold, else 404 (not a 500 from an overflow)

urlpatterns = [
    path("", job_views.home, name="home"),
    path("jobs/<id:job_id>/", job_views.job_detail, name="job-detail"),
    path("jobs/<id:job_id>/files/<path:path>", job_views.job_file, name="job-file"),
    path("jobs/<id:job_id>/resubmit/", rerun.job_resubmit, name="job-resubmit"),
    path("jobs/<id:job_id>/edit/", rerun.job_edit, name="job-edit"),
    path("jobs/<id:job_id>/<str:action>/", job_views.job_action, name="job-action"),
    path("submissions/<id:submission_id>/", batches.batch_page, name="batch-detail"),
    path("submissions/<id:submission_id>/resubmit-failed/", rerun.batch_resubmit_failed, name="batch-resubmit-failed"),
    path("submissions/<id:submission_id>/<str:action>/", batches.batch_action, name="batch-action"),
    path("dags/<id:dag_id>/", dags.dag_page, name="dag-detail"),
    path("dags/<id:dag_id>/rerun/", dags.dag_rerun, name="dag-rerun"),
    path("queue/", job_views.queue_page, name="queue"),
    path("completed/", job_views.completed, name="completed"),
    path("submit/", job_views.submit_page, name="submit"),
    path("nodes/", node_views.nodes_page, name="nodes"),
    path("nodes/<str:name>/desktop/", node_views.desktop_page, name="desktop"),
    path("nodes/<str:name>/desktop/reclaim/", node_views.desktop_reclaim, name="desktop-reclaim"),
    path("usage/", account_views.usage, name="usage"),
    path("flower/", job_views.flower, name="flower"),
    path("audit/", audit_web.audit_page, name="audit"),
    path("accounts/signup/", account_views.signup, name="signup"),
    path("accounts/login/", account_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/profile/", account_views.profile, name="profile"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include("dctoolkit.api_urls")),
]
if settings.DCT_OIDC_ON:  # single sign-on: /oidc/authenticate/ and the provider's /oidc/callback/
    urlpatterns.append(path("oidc/", include("mozilla_django_oidc.urls")))
