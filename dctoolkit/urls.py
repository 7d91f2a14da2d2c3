"""URLs: the portal, accounts, the API and the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dctoolkit.accounts import views as account_views
from dctoolkit.jobs import views as job_views

urlpatterns = [
    path("", job_views.home, name="home"),
    path("jobs/<int:job_id>/", job_views.job_detail, name="job-detail"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/profile/", account_views.profile, name="profile"),
    path("admin/", admin.site.urls),
    path("api/", include("dctoolkit.api_urls")),
]
