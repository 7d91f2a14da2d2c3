"""URLs: the portal, accounts, the API and the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dctoolkit.accounts import views as account_views
from dctoolkit.jobs import ids
from dctoolkit.jobs import views as job_views
from dctoolkit.nodes import views as node_views

ids.register()  # <id:...>: a job id the database can hold, else 404 (not a 500 from an overflow)

urlpatterns = [
    path("", job_views.home, name="home"),
    path("jobs/<id:job_id>/", job_views.job_detail, name="job-detail"),
    path("jobs/<id:job_id>/files/<path:path>", job_views.job_file, name="job-file"),
    path("jobs/<id:job_id>/<str:action>/", job_views.job_action, name="job-action"),
    path("queue/", job_views.queue_page, name="queue"),
    path("completed/", job_views.completed, name="completed"),
    path("submit/", job_views.submit_page, name="submit"),
    path("nodes/", node_views.nodes_page, name="nodes"),
    path("usage/", account_views.usage, name="usage"),
    path("flower/", job_views.flower, name="flower"),
    path("accounts/signup/", account_views.signup, name="signup"),
    path("accounts/login/", account_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/profile/", account_views.profile, name="profile"),
    path("admin/", admin.site.urls),
    path("api/", include("dctoolkit.api_urls")),
]
