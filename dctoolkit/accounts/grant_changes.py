"""Staff's changes to granted folders (`./dct grant`), each recorded in the audit trail.

Apart from `granting`, which the node reads when a job starts: a node records no audit events.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from dctoolkit.accounts.granting import hidden_folders
from dctoolkit.accounts.grants import canonical_folder
from dctoolkit.accounts.models import Grant
from dctoolkit.operations import audit
from dctoolkit.operations.models import AuditAction


def grant_folder(user: AbstractBaseUser, text: str, writable: bool, by: AbstractBaseUser | None) -> tuple[Grant, bool]:
    """Grant `user` the folder `text` names (canonicalised; GrantPathError when it cannot be granted);
    a folder granted already has its mode changed.  Returns (the grant, whether it is new)."""
    path = canonical_folder(text, hidden_folders())
    with transaction.atomic():
        found = Grant.objects.select_for_update().filter(user_id=user.pk, path=path).order_by("id")
        existing = list(found)
        if existing:
            grant = existing[0]
            Grant.objects.filter(id__in=[g.id for g in existing[1:]]).delete()
            if grant.writable != writable:
                grant.writable = writable
                grant.save(update_fields=["writable"])
                audit.record(
                    by, AuditAction.GRANT, user, path=path, writable=writable, before={"writable": not writable}
                )
            return grant, False
        # mypy: the project's user model is auth.User.
        grant = Grant.objects.create(user=user, path=path, writable=writable, granted_by=by)  # type: ignore[misc]
        audit.record(by, AuditAction.GRANT, user, path=path, writable=writable)
        return grant, True


def revoke_folder(user: AbstractBaseUser, text: str, by: audit.Actor) -> int:
    """Take back `user`'s grant of the folder `text` names, for `by`: how many rows went (0: none was granted).

    Matched as granted (canonical) and as written, so a folder that has since gone can be revoked."""
    paths = {text.rstrip("/") or "/"}
    try:
        paths.add(canonical_folder(text))
    except ValueError:
        pass
    with transaction.atomic():
        deleted, _ = Grant.objects.filter(user_id=user.pk, path__in=paths).delete()
        if deleted:
            audit.record(by, AuditAction.REVOKE, user, path=text)
    return deleted
