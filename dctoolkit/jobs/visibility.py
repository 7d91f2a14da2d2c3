"""Which jobs a user may see and touch: their own; staff, every job.

The one copy of the rule for code that holds plain rows (the command line's
fast path reads `owner_id` straight from the database); querysets use
`Job.objects.visible_to(user)`, the same rule (tests/db/test_visibility.py).
"""

from __future__ import annotations

from typing import Protocol


class Viewer(Protocol):
    """A user as the rule needs it (Django's User has both)."""

    @property
    def id(self) -> int: ...

    @property
    def is_staff(self) -> bool: ...


def may_see(viewer: Viewer, owner_id: int) -> bool:
    """Whether `viewer` may see (and act on) a job owned by the user with id `owner_id`."""
    return bool(viewer.is_staff) or viewer.id == owner_id
