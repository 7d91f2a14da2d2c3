"""Portal pages about people: sign-up, the profile page (API token) and the fair-share usage page."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from dctoolkit.accounts.forms import LoginForm, SignupForm, lockout_message
from dctoolkit.accounts.models import DailyGroupUsage, DailyUsage
from dctoolkit.accounts.serializers import group_rows, usage_rows
from dctoolkit.operations.storage import storage_rows

# Days of history the usage chart shows.
CHART_DAYS = 30


class LoginView(auth_views.LoginView):
    """Django's login, with a sign-up link when sign-up is on, and the throttle's message in the form."""

    form_class = LoginForm

    def get_context_data(self, **kwargs) -> dict:
        return {
            **super().get_context_data(**kwargs),
            "signup_allowed": settings.DCT_ALLOW_SIGNUP,
            "oidc_on": settings.DCT_OIDC_ON,
            "signon_failed": self.request.GET.get("signon") == "failed",
        }


def locked_out(request: HttpRequest, response: HttpResponse | None = None, credentials: dict | None = None):
    """django-axes' answer to a locked-out log-in: the login page itself, its form saying why (429).

    The form has already put the lockout message in its errors (LoginForm);
    only the status changes.  Anything else (the admin's log-in) gets the
    same page, made fresh.
    """
    if response is None or request.path != reverse("login"):
        form = LoginForm(request)
        form.locked_out = lockout_message()
        form.add_error(None, form.locked_out)
        response = render(request, "registration/login.html", {"form": form, "next": "", "signup_allowed": False})
    response.status_code = 429
    return response


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account and log in; when sign-up is off (DCT_ALLOW_SIGNUP=0, the production
    default) a page that says so, with status 404."""
    if not settings.DCT_ALLOW_SIGNUP:
        return render(request, "registration/signup_off.html", status=404)
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


def usage_chart(days: int, today) -> dict:
    """Chart.js data: CPU hours per user per day over the last `days` days (`datasets`), and per accounting
    group (`group_datasets`: what the jobs charging each group used)."""
    first = today - timedelta(days=days - 1)
    labels = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    users = DailyUsage.objects.filter(day__gte=first).values_list("user__username", "day", "cpu_seconds")
    groups = DailyGroupUsage.objects.filter(day__gte=first).values_list("group__name", "day", "cpu_seconds")
    return {"labels": labels, "datasets": _series(users, first, days), "group_datasets": _series(groups, first, days)}


def _series(rows, first, days: int) -> list[dict]:
    series: dict[str, list[float]] = {}
    for name, day, cpu_seconds in rows:
        series.setdefault(name, [0.0] * days)[(day - first).days] = round(cpu_seconds / 3600, 3)
    return [{"label": name, "data": data} for name, data in sorted(series.items())]


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    context = {
        "users": usage_rows(now),
        "groups": group_rows(now),
        "chart": usage_chart(CHART_DAYS, now.date()),
        "halflife_hours": settings.DCT_FAIRSHARE_HALFLIFE_SECONDS / 3600,
        "chart_days": CHART_DAYS,
        "storage": storage_rows(request.user),
    }
    return render(request, "usage.html", context)


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """GET: the user's token (made on first visit).  POST: replace it with a new one (the old stops working)."""
    if request.method == "POST":
        # mypy: login_required: request.user is a User.
        Token.objects.filter(user=request.user).delete()  # type: ignore[misc]
        # mypy: login_required: request.user is a User.
        Token.objects.create(user=request.user)  # type: ignore[misc]
        return redirect("profile")
    token, _ = Token.objects.get_or_create(user=request.user)
    return render(
        request, "accounts/profile.html", {"token": token.key, "storage": storage_rows(request.user, everyone=False)}
    )
