"""Numbers that come from a URL, a query string or a command line: job ids, pages, offsets.

A number too big for the database (SQLite's INTEGER and PostgreSQL's bigint
both stop at 2**63 - 1) raises OverflowError deep inside a query, a 500.  So
ids are bounded where they enter: a URL with a bigger one matches nothing (404),
a query parameter or a command-line argument gets a message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The largest id any supported database stores (a signed 64-bit integer).
MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def bounded_int(text: str | None, low: int, high: int) -> int | None:
    """The ASCII whole number `text` if it lies in low..high, else None (never an exception)."""
    if text is None or not _DIGITS.fullmatch(text.strip()):
        return None
    value = int(text.strip())
    return value if low <= value <= high else None


class IdConverter:
    """`<id:job_id>` in a URL: 1 to 19 ASCII digits, at most MAX_ID; anything else is no match (404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError(f"{value} is larger than any id")  # Django: no match, so 404
        return number

    def to_url(self, value: int | str) -> str:
        return str(value)


def register() -> None:
    """Make `<id:...>` known to the URL patterns (once, whichever URL module loads first)."""
    # Imported here, so that the command line's fast path (commandline.py) reads ids without Django's URLs.
    from django.urls import register_converter
    from django.urls.converters import get_converters

    if "id" not in get_converters():
        register_converter(IdConverter, "id")


def id_ranges(ids: Iterable[int], max_ranges: int = 200) -> str:
    """Ids written compactly, as ranges: `100-199,205,300-310`; past `max_ranges` ranges, `…` and how many
    ids are left out (10,000 jobs of one batch are one range; the audit trail keeps them so)."""
    ordered = sorted(set(ids))
    ranges: list[list[int]] = []
    for number in ordered:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    shown = [str(low) if low == high else f"{low}-{high}" for low, high in ranges[:max_ranges]]
    left = sum(high - low + 1 for low, high in ranges[max_ranges:])
    return ",".join(shown) + (f",… ({left:,} more)" if left else "")
