"""Portal pages about people: sign-up, the profile page (API token) and the fair-share usage page."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from rest_framework.authtoken.models import Token

from .forms import SignupForm
from .models import DailyUsage
from .reports import usage_payload

# Days of history the usage chart shows.
CHART_DAYS = 30


class LoginView(auth_views.LoginView):
    """Django's login, with a sign-up link when sign-up is on."""

    def get_context_data(self, **kwargs) -> dict:
        return {**super().get_context_data(**kwargs), "signup_allowed": settings.DCT_ALLOW_SIGNUP}


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account and log in; 404 when staff turned sign-up off (DCT_ALLOW_SIGNUP=0)."""
    if not settings.DCT_ALLOW_SIGNUP:
        raise Http404("sign-up is turned off here; ask the staff for an account")
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


def usage_chart(days: int, today) -> dict:
    """Chart.js data: CPU hours per user per day over the last `days` days."""
    first = today - timedelta(days=days - 1)
    labels = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    series: dict[str, list[float]] = {}
    rows = DailyUsage.objects.filter(day__gte=first).select_related("user").order_by("day")
    for row in rows:
        values = series.setdefault(row.user.username, [0.0] * days)
        values[(row.day - first).days] = round(row.cpu_seconds / 3600, 3)
    return {"labels": labels, "datasets": [{"label": user, "data": data} for user, data in sorted(series.items())]}


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    context = {
        "users": usage_payload(now),
        "chart": usage_chart(CHART_DAYS, now.date()),
        "halflife_hours": settings.DCT_FAIRSHARE_HALFLIFE_SECONDS / 3600,
        "chart_days": CHART_DAYS,
    }
    return render(request, "usage.html", context)


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """GET: the user's token (made on first visit).  POST: replace it with a new one (the old stops working)."""
    if request.method == "POST":
        Token.objects.filter(user=request.user).delete()
        Token.objects.create(user=request.user)
        return redirect("profile")
    token, _ = Token.objects.get_or_create(user=request.user)
    return render(request, "accounts/profile.html", {"token": token.key})
