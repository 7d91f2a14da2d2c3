"""Operators' changes to accounting groups (`./dct group`): groups made, shares changed, members added and
removed, groups deleted, each recorded in the audit trail in the change's own transaction."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from dctoolkit.accounts.models import Group, Membership
from dctoolkit.jobs.intake.keys import GROUP_NAME
from dctoolkit.jobs.models import ACTIVE_STATES, WAITING_STATES
from dctoolkit.operations import audit
from dctoolkit.operations.models import AuditAction


class GroupError(ValueError):
    """A group change that cannot be made; the message says why and what to write instead."""


def check_share(share: float) -> float:
    if not 0 < share < 1e9 or share != share:  # noqa: PLR0124 (NaN)
        raise GroupError(f"share {share:g}: a share is a number above 0, such as 1 or 2.5")
    return share


def add_group(name: str, share: float | None, by: audit.Actor) -> tuple[Group, bool]:
    """Make the group `name` (share 1 unless given), or change an existing one's share when given.
    Returns (the group, whether it is new); GroupError for a bad name or share, or an existing group
    given no share."""
    if not GROUP_NAME.fullmatch(name):
        raise GroupError(
            f"'{name}' is not a group name: letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    if share is not None:
        check_share(share)
    with transaction.atomic():
        group = Group.objects.select_for_update().filter(name=name).first()
        if group is None:
            group = Group.objects.create(name=name, share=1.0 if share is None else share)
            audit.record(by, AuditAction.GROUP, ("group", name), share=group.share, created=True)
            return group, True
        if share is None:
            raise GroupError(f"group '{name}' exists already; give --share S to change its share")
        if group.share != share:
            before = group.share
            group.share = share
            group.save(update_fields=["share"])
            audit.record(by, AuditAction.GROUP, ("group", name), share=share, before={"share": before})
        return group, False


def add_members(group: Group, users: Sequence[AbstractBaseUser], by: audit.Actor) -> list[str]:
    """Add `users` to `group` (those in it already stay as they are); the names of those added."""
    with transaction.atomic():
        there = set(Membership.objects.filter(group=group).values_list("user_id", flat=True))
        new = [u for u in dict.fromkeys(users) if u.pk not in there]
        # mypy: the project's user model is auth.User.
        Membership.objects.bulk_create([Membership(group=group, user=u) for u in new])  # type: ignore[misc]
        added = [u.get_username() for u in new]
        record_members(by, group, added=added)
    return added


def remove_members(group: Group, users: Sequence[AbstractBaseUser], by: audit.Actor) -> list[str]:
    """Take `users` out of `group`; the names of those that were in it."""
    with transaction.atomic():
        found = Membership.objects.filter(group=group, user_id__in=[u.pk for u in users])
        removed = sorted(found.values_list("user__username", flat=True))
        found.delete()
        record_members(by, group, removed=removed)
    return removed


def record_members(by: audit.Actor, group: Group, added: Sequence[str] = (), removed: Sequence[str] = ()) -> None:
    """The audit event of users `added` to and `removed` from `group` (none when neither): the CLI's and the
    admin's membership changes are recorded alike.  Inside the change's transaction."""
    details = {key: list(names) for key, names in (("added", added), ("removed", removed)) if names}
    if details:
        audit.record(by, AuditAction.MEMBER, ("group", group.name), **details)


def delete_group(name: str, by: audit.Actor) -> list[str]:
    """Delete the group `name` and its memberships; the names of its members as they were.  GroupError when
    there is no such group, or jobs not yet ended charge it (they would lose the group they were promised);
    jobs that ended keep their usage in their owners' accounts, the group's own history goes with it."""
    with transaction.atomic():
        group = Group.objects.select_for_update().filter(name=name).first()
        if group is None:
            raise GroupError(unknown_group(name))
        pending = list(group.jobs.filter(state__in=(*WAITING_STATES, *ACTIVE_STATES)).values_list("owner__username"))
        if pending:
            owners = ", ".join(sorted({owner for (owner,) in pending}))
            raise GroupError(
                f"group '{name}' is charged by {len(pending)} job{'' if len(pending) == 1 else 's'} not yet ended "
                f"(of {owners}); cancel them, or let them end, then delete it"
            )
        members = list(Membership.objects.filter(group=group).order_by("id").values_list("user__username", flat=True))
        audit.record(by, AuditAction.GROUP, ("group", name), deleted=True, share=group.share, members=members)
        group.delete()
    return members


def unknown_group(name: str) -> str:
    """The message for a group that does not exist, naming those that do."""
    known = ", ".join(Group.objects.order_by("name").values_list("name", flat=True)) or "none"
    return f"no group '{name}' (groups: {known}); ./dct group add {name} makes it"


def groups_of(user_id: int) -> list[str]:
    """The names of the groups a user is in, the first they joined (the one their jobs charge) first."""
    return list(Membership.objects.filter(user_id=user_id).order_by("id").values_list("group__name", flat=True))
