"""Writing and reading the audit trail: who did what to which job, node, share, cap, group or grant, and when.

Every action a person takes is recorded where that action goes through, once,
in the transaction of the change itself (one INSERT), by `record`:

    audit.record(request.user, "grant", ("grant", grant.name), before=..., after=...)

`target` is a model instance (a job, a submission, a node, a user) or a
(kind, name) pair for anything else.  The jobs' own life (dispatch, start, end,
requeue by the scheduler or a node) is not recorded: it is in the job's row and
its attempts, and the job path writes nothing here.

Reading: `filter_events` narrows by actor, action and time (`parse_since`
reads a date, an ISO time or an age such as `7d`), for the portal's Audit page,
GET /api/audit/ and `./dct audit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from dctoolkit.lib.units import UnitError, parse_duration
from dctoolkit.operations.models import AuditEvent

# What names a target of each model: a job by its number, a node and a group by its name, a user by their user name.
_NAMED_BY = {"job": "pk", "submission": "pk", "node": "name", "user": "username", "group": "name"}
TARGET_LENGTH = AuditEvent._meta.get_field("target").max_length or 200

# A user; a name alone (an operator's command, run as a Unix account with no dctoolkit account); None: the system.
Actor = AbstractBaseUser | AnonymousUser | str | None
Target = models.Model | tuple[str, object]


class AuditFilterError(ValueError):
    """A filter of the audit trail that cannot be read; the message says how to write it."""


def record(actor: Actor, action: str, target: Target, /, **details: Any) -> AuditEvent:
    """Record that `actor` (None: the system) did `action` to `target`, with `details` (JSON: before/after,
    a count, the selector used).  Call it inside the change's transaction, once per action."""
    return AuditEvent.objects.create(**event_fields(actor, action, target, details))


def record_each(actor: Actor, action: str, entries: Sequence[tuple[Target, dict]]) -> None:
    """One event per (target, details) of `entries`, in one INSERT (an edit of several jobs)."""
    AuditEvent.objects.bulk_create([AuditEvent(**event_fields(actor, action, t, d)) for t, d in entries])


def event_fields(actor: Actor, action: str, target: Target, details: dict) -> dict[str, Any]:
    kind, name = target_of(target)
    if isinstance(actor, str):
        person, actor_name = None, actor
    else:
        person = actor if actor is not None and actor.is_authenticated else None
        actor_name = person.get_username() if person is not None else ""
    return {
        "actor": person,
        "actor_name": actor_name,
        "action": str(action),
        "target_kind": kind,
        "target": name[:TARGET_LENGTH],
        "details": details,
    }


def target_of(target: Target) -> tuple[str, str]:
    """(kind, name) of a target: ("job", "17"), ("node", "node-3"), ("user", "alice"), or the pair as given."""
    if isinstance(target, tuple):
        kind, name = target
        return str(kind), str(name)
    kind = target._meta.model_name or type(target).__name__.lower()
    if kind == "account":  # a user's fair-share row: the target is the user
        return "user", target.user.get_username()  # type: ignore[attr-defined]
    return kind, str(getattr(target, _NAMED_BY.get(kind, "pk")))


# --- reading ---------------------------------------------------------------------------------------
def filter_events(events: QuerySet[AuditEvent], params: Mapping[str, str]) -> QuerySet[AuditEvent]:
    """Narrow by `user` (the actor's name; `system` for no actor), `action` and `since`; AuditFilterError
    naming the bad one."""
    user = (params.get("user") or "").strip()
    action = (params.get("action") or "").strip().lower()
    if "\x00" in user + action:  # no name holds one (and PostgreSQL refuses it in a query)
        return events.none()
    if user:
        events = events.filter(actor_name="") if user == "system" else events.filter(actor_name=user)
    if action:
        events = events.filter(action=action)
    since = (params.get("since") or "").strip()
    if since:
        events = events.filter(at__gte=parse_since(since, timezone.now()))
    return events


def parse_since(text: str, now: datetime) -> datetime:
    """`2026-11-25` (its start), `2026-11-25T14:00` (an ISO time, local unless it says), or an age such as
    `7d`, `12h`, `90m` (that long before `now`).  AuditFilterError, listing the forms, for anything else."""
    text = text.strip()
    try:
        day = parse_date(text)
        moment = datetime.combine(day, time.min) if day else parse_datetime(text)
    except ValueError:  # shaped like a date, but not one (2026-02-30)
        moment = None
    if moment is not None:
        return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone.get_current_timezone())
    try:
        return now - timedelta(seconds=parse_duration(text))
    except UnitError:
        pass
    shown = text if len(text) <= 40 else f"{text[:40]}… ({len(text):,} characters)"
    raise AuditFilterError(
        f"since '{shown}' is not a date, a time or an age; write it like 2026-11-25, 2026-11-25T14:00 "
        "or 7d (also 12h, 90m: that long ago)"
    )


def summary(details: Mapping[str, Any]) -> str:
    """One line for a person from an event's details: `12 jobs (100-111); selected by submission=5`,
    `share: 1.0 → 2.0`; any other detail as KEY=VALUE (whatever a caller of `record` gave)."""
    if not isinstance(details, Mapping):
        return _shown(details)
    parts, known = [], {"count", "jobs", "selection", "before", "after", "set"}
    count, ids = details.get("count"), details.get("jobs")
    if isinstance(count, int):
        parts.append(f"{count:,} job{'' if count == 1 else 's'}" + (f" ({ids})" if ids else ""))
    else:
        known -= {"count", "jobs"}
    selection = details.get("selection")
    if isinstance(selection, Mapping) and selection:
        parts.append("selected by " + " ".join(f"{k}={v}" for k, v in selection.items()))
    before, after = details.get("before"), details.get("after")
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        parts += [f"{key}: {_shown(before.get(key))} → {_shown(value)}" for key, value in after.items()]
    else:
        known -= {"before", "after"}
    parts += [f"{key}={_shown(value)}" for key, value in details.items() if key not in known]
    return "; ".join(parts)


def _shown(value: Any) -> str:
    text = "-" if value in (None, "") else ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 60 else text[:60] + "…"
