"""`GET /usage`: what was spent, by UTC day, model and token, and the spending caps with what remains.

The window is `?since=`/`?until=` (unix seconds or ISO 8601) or `?days=N` (the last N UTC calendar
days, today included); by default the current UTC month. Figures come from `receiver.domain.budget`,
the same rules the caps are checked with, so what this shows is what the next submit is held to.
An app's token (role read or submit) sees its own rows only; the caps shown are those the caller is
held to: the receiver-wide caps (whose spend counts every app's) and its token's own.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from . import contract
from .auth import principal_of
from .contract import iso, parse_time
from .domain.budget import (
    DAY,
    Cap,
    cap_statuses,
    month_start,
    period_bounds,
    usage_rows,
)
from .domain.tokens import Principal
from .errors import error_response
from .settings import Settings
from .state import state_of
from .storage.base import Stores

MAX_DAYS = 3660  # ten years: any real question, and no overflow


def _window(request: Request, now: float) -> tuple[float, float | None]:
    q = request.query_params
    return usage_window(q.get("days"), q.get("since"), q.get("until"), now)


def usage_window(
    days: str | None, since_text: str | None, until_text: str | None, now: float
) -> tuple[float, float | None]:
    """[since, until) asked for; ValueError naming the bad parameter."""
    if days is not None:
        if since_text or until_text:
            raise ValueError("give either days or since/until, not both")
        try:
            count = int(days)
        except ValueError:
            raise ValueError(f"days must be a whole number, got {days[:50]!r}") from None
        if not 1 <= count <= MAX_DAYS:
            raise ValueError(f"days must be between 1 and {MAX_DAYS}")
        return period_bounds("day", now)[0] - (count - 1) * DAY, None
    since = parse_time("since", since_text)
    until = parse_time("until", until_text)
    if since is None:
        since = month_start(now)
    if until is not None and until <= since:
        raise ValueError("until must be after since")
    return since, until


async def get_usage(request: Request) -> Response:
    s = state_of(request)
    now = time.time()
    try:
        since, until = _window(request, now)
    except ValueError as exc:
        return error_response(400, str(exc))
    usage = await usage_report(s.stores, s.settings, principal_of(request), since, until, now)
    return Response(contract.encode(usage), media_type="application/json")


async def usage_report(
    stores: Stores, settings: Settings, principal: Principal, since: float, until: float | None, now: float
) -> contract.Usage:
    """The report for `principal` over [since, until) (None: now); `openrouter-video usage
    --data-dir` builds the same one for the built-in admin."""
    facts = await stores.submissions.spend(since, until if until is not None else float("inf"))
    if not principal.is_admin:  # an app sees its own spend only
        facts = [f for f in facts if f.token == principal.name]
    # The caps the caller is held to: the receiver-wide ones and its token's own.
    caps = (*(Cap(period, usd) for period, usd in settings.budget_caps), *principal.caps)
    statuses = []
    if caps:
        widest = min(period_bounds(cap.period, now)[0] for cap in caps)
        statuses = cap_statuses(caps, await stores.submissions.spend(widest, float("inf")), now)
    rows = usage_rows(facts)
    return contract.Usage(
        since=iso(since) or "",
        until=iso(until),
        rows=[
            contract.UsageRow(r.day, r.model, r.token, r.jobs, r.estimated, r.actual, r.counted) for r in rows
        ],
        estimated_usd=round(sum(r.estimated for r in rows), 6),
        actual_usd=round(sum(r.actual for r in rows), 6),
        counted_usd=round(sum(r.counted for r in rows), 6),
        caps=[
            contract.CapUsage(
                c.period, c.cap, c.owner, iso(c.start) or "", iso(c.end) or "", c.spent, c.remaining
            )
            for c in statuses
        ],
        unknown_cost="allow" if settings.budget_unknown_cost == "allow" else "refuse",
    )
