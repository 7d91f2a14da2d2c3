"""Bounded counts and pages: what listing a user's history costs stays the same with a million rows.

A count shown is exact up to COUNT_CAP and "10,000+" past it (COUNT(*) over
at most COUNT_CAP + 1 index entries, not the whole history); a page is read
with one row more than it shows, so that "is there an older page?" needs no
count at all.  The home page's per-state counts, the completed and audit
pages' pagers and the API's `count` all stop at the same cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from dctoolkit.lib.ids import bounded_int

# Counts shown stop here: past it, "10,000+" (read when called, so that a test can set a small one).
COUNT_CAP = 10_000
# The highest page number a pager takes; more reads as page 1 (a typing mistake).
MAX_PAGE = 10_000_000


def count_cap(cap: int | None = None) -> int:
    return COUNT_CAP if cap is None else cap


def capped_count(rows: QuerySet[Any], cap: int | None = None) -> int:
    """How many `rows`, exact up to `cap` (COUNT_CAP); `cap + 1` means "more than `cap`".

    One `SELECT COUNT(*) FROM (SELECT ... LIMIT cap + 1)`: it reads at most
    cap + 1 entries of the index the filter uses, however long the history.
    """
    return rows.order_by()[: count_cap(cap) + 1].count()


def shown_count(n: int, cap: int | None = None) -> str:
    """A capped count as a person reads it: "1,234", or "10,000+" past `cap`."""
    cap = count_cap(cap)
    return f"{cap:,}+" if n > cap else f"{n:,}"


@dataclass(frozen=True)
class Page:
    """One page of a newest-first list, with what the shared pager (partials/pager.html) shows.

    `count` is a capped count: `cap + 1` when there are more than `cap` rows,
    and then `num_pages` is None (not known without counting them all).
    """

    object_list: list[Any]
    number: int
    per_page: int
    has_next: bool
    count: int
    cap: int

    @property
    def exact(self) -> bool:
        return self.count <= self.cap

    @property
    def total(self) -> str:
        return shown_count(self.count, self.cap)

    @property
    def num_pages(self) -> int | None:
        return max(1, -(-self.count // self.per_page)) if self.exact else None

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_other_pages(self) -> bool:
        return self.has_previous or self.has_next

    @property
    def previous_page_number(self) -> int:
        return self.number - 1

    @property
    def next_page_number(self) -> int:
        return self.number + 1


def read_page(rows: QuerySet[Any], number: int, per_page: int, cap: int | None = None) -> Page:
    """Page `number` (from 1) of the ordered `rows`, `per_page` a page: per_page + 1 rows read (the extra
    one says whether an older page exists), and a capped count, not a full COUNT.

    The count is skipped when the page itself tells it (the last page, not past
    the end: every row before it plus its own).
    """
    cap = count_cap(cap)
    start = (number - 1) * per_page
    fetched = list(rows[start : start + per_page + 1])
    has_next = len(fetched) > per_page
    last = fetched and not has_next
    count = min(start + len(fetched), cap + 1) if last else capped_count(rows, cap)
    return Page(fetched[:per_page], number, per_page, has_next, count, cap)


def portal_page(rows: QuerySet[Any], asked: str | None, per_page: int, cap: int | None = None) -> Page:
    """A portal page's `?page=`, as Paginator.get_page reads it: not a number reads as page 1, past the end
    as the last page (page 1 when the count is capped: finding the last would count every row)."""
    number = bounded_int((asked or "1").strip(), 1, MAX_PAGE) or 1
    page = read_page(rows, number, per_page, cap)
    if not page.object_list and number > 1:
        page = read_page(rows, page.num_pages or 1, per_page, cap)
    return page
