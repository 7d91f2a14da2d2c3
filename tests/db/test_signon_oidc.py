"""OpenID Connect log-in against a small provider the test runs on a real HTTP port.

The provider serves discovery, authorize, token (an RS256-signed id_token),
JWKS and userinfo; mozilla-django-oidc reads them over HTTP and checks the
signature itself.  The portal's side runs in Django's test client.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.urls import clear_url_caches

from dctoolkit import settings as dct_settings
from dctoolkit.accounts import signon

CLIENT_ID = "dctoolkit-portal"
CLIENT_SECRET = "oidc-client-secret-123"


class Provider:
    """A one-client OpenID provider: `next_claims` is who logs in at the next /authorize."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_key = self.key  # a test may sign with another key than the one published
        self.next_claims: dict[str, Any] = {}
        self.codes: dict[str, tuple[dict[str, Any], str]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id_token(self, claims: dict[str, Any], nonce: str) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": CLIENT_ID, "sub": claims["sub"], "iat": now, "exp": now + 300,
                "nonce": nonce}  # fmt: skip
        return jwt.encode(body, self.signing_key, algorithm="RS256", headers={"kid": "k1"})

    def handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    self.send(200, {
                        "issuer": provider.issuer,
                        "authorization_endpoint": provider.issuer + "/authorize",
                        "token_endpoint": provider.issuer + "/token",
                        "userinfo_endpoint": provider.issuer + "/userinfo",
                        "jwks_uri": provider.issuer + "/jwks",
                    })  # fmt: skip
                elif url.path == "/jwks":
                    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(provider.key.public_key()))
                    self.send(200, {"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]})
                elif url.path == "/authorize":
                    assert query["client_id"] == CLIENT_ID
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = (dict(provider.next_claims), query["nonce"])
                    back = f"{query['redirect_uri']}?{urllib.parse.urlencode({'code': code, 'state': query['state']})}"
                    self.send(302, {}, {"Location": back})
                elif url.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    if token in provider.tokens:
                        self.send(200, provider.tokens[token])
                    else:
                        self.send(401, {"error": "invalid_token"})
                else:
                    self.send(404, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                    self.send(401, {"error": "invalid_client"})
                    return
                claims, nonce = provider.codes.pop(form.get("code", ""), ({}, ""))
                if not claims:
                    self.send(400, {"error": "invalid_grant"})
                    return
                access = secrets.token_urlsafe(16)
                provider.tokens[access] = claims
                self.send(
                    200, {"access_token": access, "token_type": "Bearer", "id_token": provider.id_token(claims, nonce)}
                )

        return Handler


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    yield p
    p.server.shutdown()


@pytest.fixture
def oidc_on(provider, settings, monkeypatch):
    """The settings settings.py makes from DCT_OIDC_*, and the /oidc/ URLs it then adds."""
    for name, value in {
        "DCT_OIDC_ISSUER": provider.issuer,
        "DCT_OIDC_CLIENT_ID": CLIENT_ID,
        "DCT_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "DCT_OIDC_STAFF_CLAIM": "groups",
        "DCT_OIDC_STAFF_GROUP": "dct-staff",
    }.items():
        monkeypatch.setenv(name, value)
    for key, value in dct_settings._oidc_settings().items():
        setattr(settings, key, value)
    settings.DCT_OIDC_ON = True
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "dctoolkit.accounts.signon.OIDCBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    settings.ROOT_URLCONF = "tests.db.oidc_urls"
    signon._discovered.clear()
    provider.signing_key = provider.key
    yield settings
    clear_url_caches()


def sign_on(client, provider: Provider, claims: dict[str, Any]):
    """The browser's round trip: portal -> provider's /authorize -> portal's callback (real HTTP to the provider)."""
    import requests

    provider.next_claims = claims
    to_provider = client.get("/oidc/authenticate/")
    assert to_provider.status_code == 302 and to_provider["Location"].startswith(provider.issuer + "/authorize")
    back = requests.get(to_provider["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302
    callback = urllib.parse.urlsplit(back.headers["Location"])
    return client.get(f"{callback.path}?{callback.query}")


@pytest.mark.django_db
def test_an_oidc_user_is_created_at_first_log_in_with_staff_from_the_group_claim(oidc_on, provider, client):
    User = get_user_model()
    done = sign_on(client, provider, {"sub": "u-1", "preferred_username": "frank", "email": "frank@lab.test",
                                      "groups": ["physics", "dct-staff"]})  # fmt: skip
    assert done.status_code == 302 and done["Location"] == "/"
    frank = User.objects.get(username="frank")
    assert (frank.is_staff, frank.email) == (True, "frank@lab.test")
    assert client.session["_auth_user_id"] == str(frank.pk)
    client.logout()
    sign_on(
        client, provider, {"sub": "u-2", "preferred_username": "gina", "email": "g@lab.test", "groups": ["physics"]}
    )
    assert User.objects.get(username="gina").is_staff is False


@pytest.mark.django_db
def test_staff_is_taken_away_when_the_claim_no_longer_holds_the_group(oidc_on, provider, client):
    sign_on(client, provider, {"sub": "u-1", "preferred_username": "frank", "groups": ["dct-staff"]})
    client.logout()
    sign_on(client, provider, {"sub": "u-1", "preferred_username": "frank", "groups": []})
    assert get_user_model().objects.get(username="frank").is_staff is False


@pytest.mark.django_db
def test_an_id_token_signed_with_another_key_logs_nobody_in(oidc_on, provider, client):
    provider.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    done = sign_on(client, provider, {"sub": "u-9", "preferred_username": "mallory", "groups": ["dct-staff"]})
    assert done.status_code == 302 and done["Location"] == "/accounts/login/?signon=failed"
    assert "_auth_user_id" not in client.session
    assert "Single sign-on did not log you in" in client.get(done["Location"]).content.decode()
    assert not get_user_model().objects.filter(username="mallory").exists()


@pytest.mark.django_db
def test_an_id_token_for_another_client_logs_nobody_in(oidc_on, provider, client, monkeypatch):
    real = provider.id_token
    monkeypatch.setattr(provider, "id_token", lambda claims, nonce: jwt.encode(
        {**jwt.decode(real(claims, nonce), options={"verify_signature": False}), "aud": "another-client"},
        provider.key, algorithm="RS256", headers={"kid": "k1"},
    ))  # fmt: skip
    done = sign_on(client, provider, {"sub": "u-8", "preferred_username": "trudy"})
    assert done["Location"] == "/accounts/login/?signon=failed"
    assert not get_user_model().objects.filter(username="trudy").exists()


@pytest.mark.django_db
def test_a_provider_user_named_like_a_local_account_does_not_become_it(oidc_on, provider, client):
    admin = get_user_model().objects.create_user("admin", password="local-admin-pw", is_staff=True)
    done = sign_on(client, provider, {"sub": "u-7", "preferred_username": "admin", "groups": []})
    assert done["Location"] == "/accounts/login/?signon=failed"
    assert "_auth_user_id" not in client.session
    admin.refresh_from_db()
    assert admin.is_staff and admin.check_password("local-admin-pw"), "the local account is untouched"


@pytest.mark.django_db
def test_local_accounts_keep_working_with_oidc_on(oidc_on, client):
    get_user_model().objects.create_user("erin", password="erin-local-pw")
    response = client.post("/accounts/login/", {"username": "erin", "password": "erin-local-pw"})
    assert response.status_code == 302 and "_auth_user_id" in client.session


@pytest.mark.django_db
def test_the_login_page_offers_single_sign_on(oidc_on, client):
    page = client.get("/accounts/login/").content.decode()
    assert "Log in with single sign-on" in page and "/oidc/authenticate/" in page


@pytest.mark.django_db
def test_a_provider_that_does_not_answer_gives_a_clear_503(oidc_on, settings, client):
    settings.DCT_OIDC_ISSUER = "http://127.0.0.1:1"
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 503 and b"identity provider does not answer" in response.content
