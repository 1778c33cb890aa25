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
from .errors import error_response
from .state import state_of

MAX_DAYS = 3660  # ten years: any real question, and no overflow


def _window(request: Request, now: float) -> tuple[float, float | None]:
    """[since, until) asked for; ValueError naming the bad parameter."""
    q = request.query_params
    days = q.get("days")
    if days is not None:
        if q.get("since") or q.get("until"):
            raise ValueError("give either days or since/until, not both")
        try:
            count = int(days)
        except ValueError:
            raise ValueError(f"days must be a whole number, got {days[:50]!r}") from None
        if not 1 <= count <= MAX_DAYS:
            raise ValueError(f"days must be between 1 and {MAX_DAYS}")
        return period_bounds("day", now)[0] - (count - 1) * DAY, None
    since = parse_time("since", q.get("since"))
    until = parse_time("until", q.get("until"))
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
    principal = principal_of(request)
    facts = await s.stores.submissions.spend(since, until if until is not None else float("inf"))
    if not principal.is_admin:  # an app sees its own spend only
        facts = [f for f in facts if f.token == principal.name]
    # The caps the caller is held to: the receiver-wide ones and its token's own.
    caps = (*(Cap(period, usd) for period, usd in s.settings.budget_caps), *principal.caps)
    statuses = []
    if caps:
        widest = min(period_bounds(cap.period, now)[0] for cap in caps)
        statuses = cap_statuses(caps, await s.stores.submissions.spend(widest, float("inf")), now)
    rows = usage_rows(facts)
    usage = contract.Usage(
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
        unknown_cost="allow" if s.settings.budget_unknown_cost == "allow" else "refuse",
    )
    return Response(contract.encode(usage), media_type="application/json")
