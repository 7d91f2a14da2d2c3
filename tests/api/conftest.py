"""API tests: Django's test database, DRF's APIClient, shared storage in a temporary folder.

Standard users: `alice` owns the jobs, `bob` is another user, `root` is staff.
"""

import io

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from dctoolkit.jobs.scheduling import wake

HELLO = "print('hello')\n"


@pytest.fixture(autouse=True)
def storage(settings, tmp_path, monkeypatch):
    settings.DCT_STORAGE = tmp_path / "storage"
    # Nothing listens there: waking the scheduler is a quick no-op (these tests run no scheduler).
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(wake, "_redis", None)
    return settings.DCT_STORAGE


@pytest.fixture
def users(db):
    User = get_user_model()
    return {
        "alice": User.objects.create_user("alice", password="pw-alice-123"),
        "bob": User.objects.create_user("bob", password="pw-bob-12345"),
        "root": User.objects.create_user("root", password="pw-root-1234", is_staff=True),
    }


def client_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def alice(users):
    return client_for(users["alice"])


@pytest.fixture
def bob(users):
    return client_for(users["bob"])


@pytest.fixture
def root(users):
    return client_for(users["root"])


def upload(name: str, content: str | bytes) -> io.BytesIO:
    f = io.BytesIO(content.encode() if isinstance(content, str) else content)
    f.name = name
    return f


def submit(client: APIClient, text: str, files: dict[str, str | bytes] | None = None, name: str = "job.txt"):
    """POST /api/jobs/ with the submission file and its files, as a script would."""
    data = {"submission": upload(name, text), "files": [upload(n, c) for n, c in (files or {}).items()]}
    return client.post("/api/jobs/", data, format="multipart")


@pytest.fixture
def job(alice):
    """One queued job of alice's."""
    response = submit(alice, "executable = hello.py\n", {"hello.py": HELLO})
    assert response.status_code == 201, response.content
    return response.json()["jobs"][0]
