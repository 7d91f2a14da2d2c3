"""The profile page shows the user's API token and renews it."""

import pytest
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def test_profile_needs_a_login(client):
    response = client.get("/accounts/profile/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_profile_shows_a_token_that_works_for_the_api(client, users):
    client.force_login(users["alice"])
    page = client.get("/accounts/profile/").content.decode()
    key = Token.objects.get(user=users["alice"]).key
    assert key in page and "export DCT_TOKEN=" + key in page
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200


def test_renewing_replaces_the_token_and_the_old_one_stops_working(client, users):
    client.force_login(users["alice"])
    client.get("/accounts/profile/")
    old = Token.objects.get(user=users["alice"]).key
    response = client.post("/accounts/profile/")
    assert response.status_code == 302
    new = Token.objects.get(user=users["alice"]).key
    assert new != old and new in client.get("/accounts/profile/").content.decode()
    client.logout()
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Token {old}").status_code == 401
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Token {new}").status_code == 200
