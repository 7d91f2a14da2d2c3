"""Single sign-on with OpenID Connect (mozilla-django-oidc), configured by DCT_OIDC_* in settings.py.

The provider's endpoints come from its discovery document, read once at the
first OIDC log-in (not at start-up: a provider that is down must not stop the
portal, nor password log-ins).  A user is matched and created by the
`preferred_username` claim, the same name space as local and LDAP accounts;
staff is whoever's `DCT_OIDC_STAFF_CLAIM` claim holds `DCT_OIDC_STAFF_GROUP`,
decided again at every log-in.  LDAP needs no code here: django-auth-ldap's
backend is configured in settings.py alone.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

log = logging.getLogger(__name__)

# mozilla-django-oidc's endpoint settings -> the discovery document's keys.
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


class SignOnUnavailableError(Exception):
    """The OpenID provider's discovery document could not be read or does not fit."""


_discovered: dict[str, Any] = {}
_lock = threading.Lock()


def discovery() -> dict[str, Any]:
    """The provider's discovery document (read once per process)."""
    with _lock:
        if not _discovered:
            issuer = settings.DCT_OIDC_ISSUER
            url = f"{issuer}/.well-known/openid-configuration"
            try:
                response = requests.get(url, timeout=10)
                response.raise_for_status()
                document = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise SignOnUnavailableError(f"cannot read {url}: {exc}") from None
            if document.get("issuer", "").rstrip("/") != issuer:
                raise SignOnUnavailableError(
                    f"{url} names issuer {document.get('issuer')!r}, not DCT_OIDC_ISSUER {issuer!r}"
                )
            missing = [key for key in ENDPOINTS.values() if not document.get(key)]
            if missing:
                raise SignOnUnavailableError(f"{url} lacks {', '.join(missing)}")
            _discovered.update(document)
        return _discovered


def signon_setting(attr: str, *default: Any) -> Any:
    if attr in ENDPOINTS:
        return discovery()[ENDPOINTS[attr]]
    return import_from_settings(attr, *default)


def username_from_claims(email: str, claims: dict[str, Any] | None = None) -> str:
    """OIDC_USERNAME_ALGO: the provider's `preferred_username`, else the e-mail address."""
    return str((claims or {}).get("preferred_username") or email)


def is_staff_by_claims(claims: dict[str, Any]) -> bool:
    group = settings.DCT_OIDC_STAFF_GROUP
    held = claims.get(settings.DCT_OIDC_STAFF_CLAIM) or []
    if isinstance(held, str):
        held = [held]
    return bool(group) and group in held


class OIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, matching users by name and taking staff from a group claim."""

    get_settings = staticmethod(signon_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django makes a backend for every log-in, password ones too: the
        # provider is asked only when an OIDC log-in comes back (authenticate).
        self.UserModel = get_user_model()

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if request is None or "code" not in request.GET or "state" not in request.GET:
            return None
        try:
            super().__init__()
        except SignOnUnavailableError as exc:
            log.error("OpenID Connect log-in refused: %s", exc)
            return None
        try:
            return super().authenticate(request, **kwargs)
        except SuspiciousOperation as exc:  # a bad signature, nonce, issuer or audience
            log.warning("OpenID Connect log-in refused: %s", exc)
            return None

    def verify_token(self, token: str, **kwargs: Any) -> Any:
        """The library checks the signature and nonce; the issuer and audience are checked here."""
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation(f"id_token is for {audience!r}, not this client")
        if str(payload.get("iss", "")).rstrip("/") != settings.DCT_OIDC_ISSUER:
            raise SuspiciousOperation(f"id_token comes from issuer {payload.get('iss')!r}, not DCT_OIDC_ISSUER")
        return payload

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        """A user needs a name: `preferred_username`, else `email` (the library asks for email alone)."""
        return bool(self.get_username(claims))

    def get_username(self, claims: dict[str, Any]) -> str:
        return username_from_claims(claims.get("email", ""), claims)

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        # Never an account with a password of its own (the admin `adduser` made, a local user): a
        # provider's `preferred_username` is not unique by OpenID's own rules, so a provider user who
        # calls themself "admin" must not become the local admin.  Accounts made by sign-on (and LDAP)
        # have no usable password.
        name = self.get_username(claims)
        if not name:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(username=name, password__startswith=UNUSABLE_PASSWORD_PREFIX)

    def create_user(self, claims: dict[str, Any]) -> Any:
        name = self.get_username(claims)
        if self.UserModel.objects.filter(username=name).exists():
            raise SuspiciousOperation(
                f"the provider's user {name!r} has the name of a local account with a password; "
                "it is not logged in as that account (rename one of them)"
            )
        user = self.UserModel.objects.create_user(name, email=claims.get("email", ""))
        return self.update_user(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        user.email = claims.get("email", user.email)
        user.first_name = claims.get("given_name", user.first_name)
        user.last_name = claims.get("family_name", user.last_name)
        user.is_staff = is_staff_by_claims(claims)
        user.save()
        return user


class OIDCLogIn(OIDCAuthenticationRequestView):
    """The redirect to the provider; a clear 503 (not a 500) when it cannot be reached."""

    get_settings = staticmethod(signon_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._init = (args, kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            super().__init__(*self._init[0], **self._init[1])
        except SignOnUnavailableError as exc:
            log.error("OpenID Connect log-in unavailable: %s", exc)
            return HttpResponse(
                "Single sign-on is unavailable: the identity provider does not answer. "
                "Try again later, or log in with a password.\n",
                status=503,
                content_type="text/plain",
            )
        return super().get(request)
