"""Account pages: the profile page shows and renews the user's API token."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from rest_framework.authtoken.models import Token


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """GET: the user's token (made on first visit).  POST: replace it with a new one (the old stops working)."""
    if request.method == "POST":
        Token.objects.filter(user=request.user).delete()
        Token.objects.create(user=request.user)
        return redirect("profile")
    token, _ = Token.objects.get_or_create(user=request.user)
    return render(request, "accounts/profile.html", {"token": token.key})
