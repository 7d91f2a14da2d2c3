"""The audit trail in the portal: the staff's Audit page, the portal's buttons and the admin's changes
(a share, a node's drain, a user's staff flag, a group's members, the job actions) each recorded with who made them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from dctoolkit.accounts.models import Account, Group, Membership
from dctoolkit.jobs.models import JobState
from dctoolkit.operations import audit_web
from dctoolkit.operations.models import AuditEvent
from tests.portal.conftest import make_job

pytestmark = pytest.mark.django_db


def events() -> list[tuple[str, str, str, str]]:
    return [(e.actor_name, e.action, e.target_kind, e.target) for e in AuditEvent.objects.order_by("id")]


@pytest.fixture
def chief(client):
    user = User.objects.create_superuser("chief", password="chief-pass-123")
    client.force_login(user)
    return user


# --- the Audit page ------------------------------------------------------------------------------
def test_staff_see_the_events_on_the_audit_page_and_filter_them(client, owner, staff):
    queued = make_job(owner, state=JobState.QUEUED)
    client.force_login(owner)
    client.post(f"/jobs/{queued.id}/hold/")
    client.post(f"/submissions/{queued.submission_id}/cancel/")
    assert events() == [
        ("alice", "hold", "job", str(queued.id)),
        ("alice", "cancel", "job", str(queued.id)),  # a batch of one: the one job it changed
    ]
    client.force_login(staff)
    page = client.get("/audit/")
    assert page.status_code == 200
    table = page.content.decode()
    assert 'data-testid="audit-table"' in table and f'href="/jobs/{queued.id}/">job {queued.id}</a>' in table
    assert "<td>alice</td><td>hold</td>" in table and "<td>alice</td><td>cancel</td>" in table
    only_holds = client.get("/audit/", {"action": "hold", "user": "alice", "since": "1d"}).content.decode()
    assert "<td>hold</td>" in only_holds and "<td>cancel</td>" not in only_holds
    assert "No events match these filters." in client.get("/audit/", {"user": "bob"}).content.decode()
    assert 'href="/audit/"' in table, "the staff's menu links it"


def test_an_event_of_any_shape_is_shown(client, staff):
    # What another part records (grants, caps, ...) is shown as it is, whatever its target or details.
    AuditEvent.objects.create(action="grant", target_kind="job", target="not-a-number", details=["odd"])
    AuditEvent.objects.create(action="cap", target_kind="group", target="physics", details={"cpus": 64})
    client.force_login(staff)
    page = client.get("/audit/").content.decode()
    assert "job not-a-number" in page and "group physics" in page and "cpus=64" in page


def test_audit_page_shares_the_pager(client, staff, monkeypatch):
    monkeypatch.setattr(audit_web, "PER_PAGE", 2)
    for target in "abc":
        AuditEvent.objects.create(action="grant", target_kind="group", target=target, details={})
    client.force_login(staff)
    first = client.get("/audit/", {"action": "grant"}).text
    assert "3 events · page 1 of 2" in first and 'href="?action=grant&amp;page=2">Older →' in first
    assert "group a" not in first and "group a" in client.get("/audit/?action=grant&page=2").text


def test_a_bad_since_on_the_audit_page_is_said_on_the_page(client, staff):
    client.force_login(staff)
    page = client.get("/audit/", {"since": "soon", "page": "x"})
    assert page.status_code == 200
    assert "since &#x27;soon&#x27; is not a date, a time or an age" in page.content.decode()


def test_the_audit_page_is_refused_to_anyone_but_staff(client, owner):
    assert client.get("/audit/").status_code == 302, "to the login page"
    client.force_login(owner)
    page = client.get("/audit/")
    assert page.status_code == 404
    assert 'href="/audit/"' not in client.get("/").content.decode()


# --- the admin -----------------------------------------------------------------------------------
def test_a_share_changed_in_the_admin_is_recorded_before_and_after(client, chief, owner):
    account = Account.objects.create(user=owner)
    form = {"share": "2.5", "usage": "0", "user": owner.id}
    assert client.post(f"/admin/accounts/account/{account.id}/change/", form).status_code == 302
    (event,) = AuditEvent.objects.all()
    assert (event.actor_name, event.action, event.target_kind, event.target) == ("chief", "share", "user", "alice")
    assert event.details == {"before": {"share": 1.0}, "after": {"share": 2.5}}


def test_a_share_changed_in_the_admins_list_is_recorded(client, chief, owner):
    account = Account.objects.create(user=owner)
    form = {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(account.id),
            "form-0-share": "3", "_save": "Save"}  # fmt: skip
    assert client.post("/admin/accounts/account/", form).status_code == 302
    assert Account.objects.get(id=account.id).share == 3.0
    assert events() == [("chief", "share", "user", "alice")]


def group_form(client, url: str, group: dict, rows: list[dict]) -> dict:
    """The admin's group page as posted: the group's fields, and the membership inline's rows (`id`, `user`,
    `DELETE`) under the prefix the page uses."""
    inline = client.get(url).context["inline_admin_formsets"][0].formset
    form = {"max_running_jobs": "", "max_running_gpus": "", "max_queued_jobs": "", **group, "_save": "Save"}
    counts = {"TOTAL": len(rows), "INITIAL": sum(1 for r in rows if "id" in r), "MIN_NUM": 0, "MAX_NUM": 1000}
    form.update({f"{inline.prefix}-{key}_FORMS": str(n) for key, n in counts.items()})
    for k, row in enumerate(rows):
        form.update({f"{inline.prefix}-{k}-{key}": value for key, value in row.items()})
    return form


def test_members_changed_in_the_admins_group_page_are_recorded_as_the_cli_records_them(client, chief, owner, other):
    carol, dave = (User.objects.create_user(name) for name in ("carol", "dave"))
    group = Group.objects.create(name="bio")
    kept, gone, moved = (Membership.objects.create(group=group, user=u) for u in (carol, owner, other))
    url = f"/admin/accounts/group/{group.id}/change/"
    rows = [
        {"id": kept.id, "group": group.id, "user": carol.id},
        {"id": gone.id, "group": group.id, "user": owner.id, "DELETE": "on"},  # alice taken out
        {"id": moved.id, "group": group.id, "user": dave.id},  # bob's row given to dave
    ]
    response = client.post(url, group_form(client, url, {"name": "bio", "share": "1"}, rows))
    assert response.status_code == 302, response.context and response.context["errors"]
    assert set(Membership.objects.filter(group=group).values_list("user__username", flat=True)) == {"carol", "dave"}
    (event,) = AuditEvent.objects.all()
    assert (event.actor_name, event.action, event.target_kind, event.target) == ("chief", "member", "group", "bio")
    assert event.details == {"added": ["dave"], "removed": ["alice", "bob"]}
    # Saving the page again with nothing changed records nothing.
    rows = [{"id": m.id, "group": group.id, "user": m.user_id} for m in Membership.objects.filter(group=group)]
    assert client.post(url, group_form(client, url, {"name": "bio", "share": "1"}, rows)).status_code == 302
    assert AuditEvent.objects.count() == 1


def test_a_group_added_in_the_admin_with_members_records_both(client, chief, owner):
    url = "/admin/accounts/group/add/"
    response = client.post(url, group_form(client, url, {"name": "chem", "share": "2"}, [{"user": owner.id}]))
    assert response.status_code == 302, response.context and response.context["errors"]
    assert events() == [("chief", "add", "group", "chem"), ("chief", "member", "group", "chem")]
    assert AuditEvent.objects.get(action="member").details == {"added": ["alice"]}
    # Deleted in the admin: named by its name too, as ./dct group remove names it.
    group = Group.objects.get(name="chem")
    assert client.post(f"/admin/accounts/group/{group.id}/delete/", {"post": "yes"}).status_code == 302
    assert events()[-1] == ("chief", "delete", "group", "chem")


def test_a_node_drained_in_the_admin_is_a_drain_event(client, chief, node):
    form = {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(node.id),
            "form-0-drained": "on", "_save": "Save"}  # fmt: skip
    assert client.post("/admin/nodes/node/", form).status_code == 302
    node.refresh_from_db()
    assert node.drained and node.load == 0.42, "only drained changes; the heartbeat's fields stay"
    assert events() == [("chief", "drain", "node", "node-1")]


def test_a_user_made_staff_in_the_admin_is_recorded_before_and_after(client, chief, owner):
    page = client.get(f"/admin/auth/user/{owner.id}/change/")
    form = {k: v for k, v in page.context["adminform"].form.initial.items() if v is not None}
    form.update({"username": "alice", "is_staff": "on", "is_active": "on",
                 "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})  # fmt: skip
    form.pop("groups", None), form.pop("user_permissions", None), form.pop("last_login", None)
    response = client.post(f"/admin/auth/user/{owner.id}/change/", form)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    event = AuditEvent.objects.get(action="change")
    assert (event.actor_name, event.target_kind, event.target) == ("chief", "user", "alice")
    assert event.details["before"]["is_staff"] is False and event.details["after"]["is_staff"] is True


def test_a_user_added_in_the_admin_is_recorded_and_the_password_is_not(client, chief):
    form = {"username": "carol", "password1": "carol-secret-991", "password2": "carol-secret-991",
            "usable_password": "true"}  # fmt: skip
    assert client.post("/admin/auth/user/add/", form).status_code == 302
    event = AuditEvent.objects.get(action="add")
    assert (event.actor_name, event.target_kind, event.target) == ("chief", "user", "carol")
    assert "carol-secret-991" not in str(event.details)
    assert event.details["after"]["password1"] == "(changed)"


def test_the_admins_job_actions_are_recorded_as_the_admin(client, chief, owner):
    queued = make_job(owner, state=JobState.QUEUED)
    done = make_job(owner, state=JobState.SUCCEEDED)
    client.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [queued.id, done.id]})
    assert events() == [("chief", "cancel", "job", str(queued.id))], "the ended job did not change"


def test_events_cannot_be_changed_or_deleted_in_the_admin(client, chief):
    event = AuditEvent.objects.create(action="drain", target_kind="node", target="node-1")
    assert client.get("/admin/operations/auditevent/").status_code == 200
    assert client.post(f"/admin/operations/auditevent/{event.id}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(id=event.id).exists()


def test_a_password_set_in_the_admin_is_recorded_without_it(client, chief, owner):
    form = {"password1": "new-secret-pass-55", "password2": "new-secret-pass-55", "usable_password": "true"}
    assert client.post(f"/admin/auth/user/{owner.id}/password/", form).status_code == 302
    (event,) = AuditEvent.objects.all()
    assert (event.actor_name, event.action, event.target) == ("chief", "change", "alice")
    assert event.details == {"before": {}, "after": {"password": "(changed)"}}
