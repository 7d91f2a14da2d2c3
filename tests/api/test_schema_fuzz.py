"""Schemathesis against /api/schema/: generated requests to every operation, in process (WSGI).

Bounded (a few examples per operation) so it runs in well under a minute; it
fails on any 5xx, any status code the schema does not list, and any answer
that does not conform to the schema.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import HELLO, submit

# Examples per operation: enough to reach the error paths, small enough for CI.
# Derandomized: CI runs the same cases every time; explore with a seed by hand
# (pytest --hypothesis-seed=N after dropping derandomize) when changing the API.
EXAMPLES = 12

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def keep_test_connection(token):
    # Requests go straight to the WSGI app, not through Django's test client,
    # so do what the client does: keep the end of a request from closing the
    # test's database connection (on PostgreSQL that ends its transaction).
    # After `token`: the test client used there connects the handlers again.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def token(alice, users, storage):
    # One job of alice's, so that some generated ids find a job and its files.
    submit(alice, "executable = hello.py\n", {"hello.py": HELLO})
    return Token.objects.get(user=users["alice"]).key


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case, token, keep_test_connection):
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
