"""Draining a node and resuming it: `./dct drain|resume NODE` and the admin's "drained" box, one rule."""

from __future__ import annotations

from django.db import transaction

from dctoolkit.nodes.models import Node
from dctoolkit.operations import audit


def set_drained(name: str, drained: bool, *, actor: audit.Actor) -> bool:
    """Drain node `name` (it finishes its jobs and takes no new ones) or, with `drained` False, resume it,
    for `actor`; False when there is no such node.  A change is one conditional UPDATE and one audit
    event (drain / resume), in one transaction; asking for what already is changes and records nothing."""
    with transaction.atomic():
        node = Node.objects.filter(name=name).first()
        if node is None:
            return False
        if Node.objects.filter(pk=node.pk, drained=not drained).update(drained=drained):
            audit.record(actor, "drain" if drained else "resume", node)
    return True
