"""Template filters of the portal: durations, sizes, state colours, viewer-local times."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from dctoolkit.lib.units import format_mb, format_seconds

register = template.Library()

# Bootstrap colour of each job and node state (a badge's text-bg-*).
STATE_COLOURS = {
    "waiting": "light",
    "queued": "secondary",
    "held": "warning",
    "dispatched": "info",
    "running": "primary",
    "suspended": "warning",
    "vacated": "warning",
    "succeeded": "success",
    "failed": "danger",
    "cancelled": "dark",
    "available": "success",
    "busy": "primary",
    "draining": "warning",
    "drained": "warning",
    "refusing": "danger",
    "offline": "secondary",
}


# What a page shows for a duration or size not known (yet).
UNKNOWN = "–"


@register.filter
def duration(seconds: float | None) -> str:
    """A duration as the command line writes it (units.format_seconds): 75 -> '1m15s'; None -> '–'."""
    return format_seconds(seconds, missing=UNKNOWN)


@register.filter
def size_mb(megabytes: float | None) -> str:
    """Megabytes as the command line writes them (units.format_mb): '512 MB', '7.6 GB'; None -> '–'."""
    return format_mb(megabytes, missing=UNKNOWN)


@register.filter
def state_badge(state: str) -> str:
    """A coloured badge for a job or node state."""
    colour = STATE_COLOURS.get(state, "secondary")
    return format_html('<span class="badge text-bg-{} state-badge">{}</span>', colour, state)


@register.filter
def localtime_tag(iso: str | None) -> str:
    """An ISO time in a <time> element; portal.js rewrites it in the viewer's time zone."""
    if not iso:
        return "–"
    return format_html('<time datetime="{}">{}</time>', iso, iso[:19].replace("T", " ") + " UTC")


@register.filter
def percent(part: float | None, whole: float | None) -> int:
    """part/whole as a whole percentage, 0 when unknown (for progress bars)."""
    if not part or not whole:
        return 0
    return max(0, min(100, round(100 * part / whole)))
