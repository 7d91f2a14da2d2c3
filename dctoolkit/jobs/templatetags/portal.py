"""Template filters of the portal: durations, sizes, state colours, viewer-local times."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

register = template.Library()

# Bootstrap colour of each job and node state (a badge's text-bg-*).
STATE_COLOURS = {
    "queued": "secondary",
    "held": "warning",
    "dispatched": "info",
    "running": "primary",
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


@register.filter
def duration(seconds: float | None) -> str:
    """90061.5 -> '1d 1h 1m', 75 -> '1m 15s', 2.34 -> '2.3s'; None -> '–'."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@register.filter
def size_mb(megabytes: float | None) -> str:
    """Megabytes as a person reads them: '512 MB', '7.6 GB'."""
    if megabytes is None:
        return "–"
    if megabytes >= 1024:
        return f"{megabytes / 1024:.1f} GB"
    return f"{megabytes:.0f} MB"


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
