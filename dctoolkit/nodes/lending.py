"""A desktop node's owner and the server: who may see its page, and "I need it now" (nodes/worker/desktop.py
is the node's side: idle time, suspend, resume, vacate)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from dctoolkit.nodes.models import Node
from dctoolkit.operations import audit
from dctoolkit.operations.models import AuditAction


def may_manage(user: AbstractBaseUser | AnonymousUser, node: Node) -> bool:
    """Staff, or the user the node names as its owner (DCT_NODE_OWNER), may see a desktop's page and reclaim it."""
    if not user.is_authenticated:
        return False
    return bool(getattr(user, "is_staff", False)) or (bool(node.owner) and user.get_username() == node.owner)


def reclaim(node: Node, *, actor: audit.Actor) -> bool:
    """The owner needs their desktop now: it takes no new job at once, and its node vacates the jobs it runs
    (SIGTERM, a grace, SIGKILL; back to the queue without using up an attempt) at its next heartbeat.
    False for a node that is not a desktop."""
    if node.policy != "desktop":
        return False
    now = timezone.now()
    with transaction.atomic():
        Node.objects.filter(pk=node.pk).update(reclaimed_at=now, owner_present=True, presence_since=now)
        audit.record(actor, AuditAction.RECLAIM, node)
    return True
