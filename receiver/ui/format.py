"""How the dashboard shows values: the Jinja2 filters. Pure functions (no I/O), shared by every page."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from openrouter_video import TERMINAL_STATUSES

from ..domain.model import JobRecord


def iso(ts: float | None) -> str:
    """ISO 8601 in UTC, to the second (the `datetime` attribute of a <time> element takes the same)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(ts: float | None) -> str:
    if ts is None:
        return ""
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def span(seconds: float | None) -> str:
    """A length of time for people: 45s, 3m 05s, 2h 10m, 3d 4h."""
    if seconds is None:
        return ""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    delta = (now if now is not None else time.time()) - ts
    return f"{span(delta)} ago" if delta >= 0 else f"in {span(-delta)}"


def started_at(job: JobRecord) -> float:
    return job.submitted_at if job.submitted_at is not None else job.created_at


def duration(job: JobRecord) -> str:
    """How long the job took (submitted or first seen, to its end); a running one: so far, marked."""
    if job.terminal_at is not None:
        return span(job.terminal_at - started_at(job))
    if job.status in TERMINAL_STATUSES:
        return ""
    return f"{span(time.time() - started_at(job))} so far"


def money(value: float | None) -> str:
    if value is None:
        return "—"
    if value and abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def short(text: str | None, limit: int = 90) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def status_class(status: str | None) -> str:
    """A CSS class per known status (anything else, a newer upstream one, gets the neutral badge)."""
    known = {
        "pending",
        "in_progress",
        "completed",
        "failed",
        "cancelled",
        "expired",
        "done",
        "downloading",
        "gone",
        "deleted",
        "applied",
        "test",
        "submitting",
        "submitted",
        "refused",
        "outcome_unknown",
    }
    return f"badge-{status}" if status in known else "badge-other"


FILTERS = {
    "iso": iso,
    "iso_ms": iso_ms,
    "span": span,
    "ago": ago,
    "duration": duration,
    "money": money,
    "size": size,
    "short": short,
    "status_class": status_class,
}
