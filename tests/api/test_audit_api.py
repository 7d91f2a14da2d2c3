"""The audit trail through the API: each action a user takes there is recorded with its actor; GET
/api/audit/ is for staff alone (403 for anyone else, 401 without a token), filtered and paginated."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from dctoolkit.operations.models import AuditEvent
from tests.api.conftest import HELLO, submit


def events() -> list[tuple[str, str, str, str]]:
    return [(e.actor_name, e.action, e.target_kind, e.target) for e in AuditEvent.objects.order_by("id")]


def test_per_job_actions_edits_and_resubmits_are_recorded_with_the_user_who_made_them(alice, root, job):
    jid = job["id"]
    assert alice.post(f"/api/jobs/{jid}/hold/").status_code == 200
    assert alice.patch(f"/api/jobs/{jid}/", {"request_memory": "2G"}, format="json").status_code == 200
    assert root.post(f"/api/jobs/{jid}/release/").status_code == 200  # staff act on anyone's job
    assert alice.post(f"/api/jobs/{jid}/resubmit/", {}, format="json").status_code == 201
    assert events() == [
        ("alice", "hold", "job", str(jid)),
        ("alice", "edit", "job", str(jid)),
        ("root", "release", "job", str(jid)),
        ("alice", "resubmit", "job", str(jid)),
    ]
    edit = AuditEvent.objects.get(action="edit")
    assert edit.details["before"] == {"request_memory_mb": job["request_memory_mb"]}
    assert edit.details["after"] == {"request_memory_mb": 2048}


def test_a_refused_action_records_nothing(alice, bob, job):
    assert bob.post(f"/api/jobs/{job['id']}/cancel/").status_code == 404  # not bob's
    assert alice.post(f"/api/jobs/{job['id']}/release/").status_code == 409  # not held
    assert alice.patch(f"/api/jobs/{job['id']}/", {"request_cpus": "many"}, format="json").status_code == 400
    assert events() == []


def test_a_bulk_cancel_is_one_event_with_the_count_and_the_selector(alice):
    response = submit(alice, "executable = hello.py\nqueue = 5\n", {"hello.py": HELLO})
    ids = [j["id"] for j in response.json()["jobs"]]
    body = {"jobs": f"{ids[0]}-{ids[-1]}", "name": "hello*"}
    assert len(alice.post("/api/jobs/cancel/", body, format="json").json()["jobs"]) == 5
    (event,) = AuditEvent.objects.all()
    assert (event.actor_name, event.action, event.target_kind) == ("alice", "cancel", "jobs")
    assert event.details == {
        "count": 5,
        "jobs": f"{ids[0]}-{ids[-1]}",
        "selection": {"ranges": f"{ids[0]}-{ids[-1]}", "name": "hello*"},
    }


def test_the_audit_trail_is_for_staff_only(alice, root, job):
    alice.post(f"/api/jobs/{job['id']}/hold/")
    refused = alice.get("/api/audit/")
    assert refused.status_code == 403
    assert "the audit trail is for staff" in refused.json()["detail"]
    assert APIClient().get("/api/audit/").status_code == 401
    answer = root.get("/api/audit/")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["count"], body["next"]) == (1, None)
    (row,) = body["events"]
    assert {k: row[k] for k in ("actor", "action", "target_kind", "target", "summary")} == {
        "actor": "alice", "action": "hold", "target_kind": "job", "target": str(job["id"]), "summary": "",
    }  # fmt: skip


def test_the_audit_api_filters_and_pages(root, users):
    now = timezone.now()
    AuditEvent.objects.bulk_create(
        [AuditEvent(at=now - timedelta(hours=i, minutes=30), actor=users["alice"], actor_name="alice", action="hold",
                    target_kind="job", target=str(i)) for i in range(60)]
        + [AuditEvent(at=now - timedelta(days=30), action="drain", target_kind="node", target="node-1")]
    )  # fmt: skip
    first = root.get("/api/audit/").json()
    assert first["count"] == 61 and len(first["events"]) == 50
    assert [e["target"] for e in first["events"][:3]] == ["0", "1", "2"], "newest first"
    second = root.get(first["next"]).json()
    assert len(second["events"]) == 11 and second["next"] is None
    assert second["events"][-1]["actor"] is None, "the system"
    assert root.get("/api/audit/", {"since": "2d"}).json()["count"] == 48  # 0.5h..47.5h ago
    assert root.get("/api/audit/", {"user": "system"}).json()["count"] == 1
    assert root.get("/api/audit/", {"action": "drain", "user": "alice"}).json()["count"] == 0


def test_bad_filters_are_a_400_that_says_how_to_write_them(root):
    answer = root.get("/api/audit/", {"since": "last tuesday"})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("since 'last tuesday' is not a date, a time or an age")
    assert root.get("/api/audit/", {"page": "0"}).status_code == 400
    assert root.get("/api/audit/", {"page": "9" * 30}).status_code == 400


def test_the_remote_audit_command_reads_the_api_and_is_refused_without_staff(live_server, users, settings, alice, job):
    # DCT_SERVER set: ./dct audit goes through GET /api/audit/ (following its pages), the same rows as locally.
    alice.post(f"/api/jobs/{job['id']}/hold/")
    AuditEvent.objects.bulk_create([AuditEvent(action="drain", target_kind="node", target=f"n{i}") for i in range(60)])
    settings.DCT_SERVER = live_server.url

    def run(user: str, *args: str) -> str:
        settings.DCT_TOKEN = Token.objects.get_or_create(user=users[user])[0].key
        out = io.StringIO()
        call_command("audit", *args, stdout=out, stderr=io.StringIO())
        return out.getvalue()

    with pytest.raises(CommandError, match="the audit trail is for staff"):
        run("alice")
    assert len(json.loads(run("root", "--json", "--limit", "55"))["events"]) == 55
    (hold,) = json.loads(run("root", "--json", "--user", "alice"))["events"]
    assert (hold["actor"], hold["action"], hold["target"]) == ("alice", "hold", str(job["id"]))
    with pytest.raises(CommandError, match="--since 'soon' is not a date"):
        run("root", "--since", "soon")


def audit_queries(client, params: dict) -> tuple[dict, list[str]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as seen:
        answer = client.get("/api/audit/", params).json()
    return answer, [q["sql"] for q in seen.captured_queries if "operations_auditevent" in q["sql"]]


def test_the_audit_api_counts_at_most_the_cap_as_the_history_pages_do(root, users, monkeypatch):
    from dctoolkit.lib import pages

    monkeypatch.setattr(pages, "COUNT_CAP", 20)
    now = timezone.now()
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(at=now - timedelta(minutes=i), action="drain", target_kind="node", target=str(i))
            for i in range(60)
        ]
    )
    first, queries = audit_queries(root, {})
    assert (first["count"], first["count_exact"], len(first["events"])) == (21, False, 50), "more than 20"
    # The page (51 rows: the extra one says there is a next) and a count that stops at the cap.
    assert len(queries) == 2 and all("LIMIT" in sql.upper() for sql in queries), queries
    last, queries = audit_queries(root, {"page": "2"})
    assert (last["count"], last["count_exact"], len(last["events"]), last["next"]) == (21, False, 10, None)
    few, queries = audit_queries(root, {"since": "10m"})
    assert 0 < few["count"] == len(few["events"]) < 20 and (few["count_exact"], few["next"]) == (True, None)
    assert len(queries) == 1, "a first page that is also the last is its own count"
