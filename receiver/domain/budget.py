"""The spending cap and the usage report: pure decisions over what the store read.

A submit through the receiver is refused (402) when its estimated cost would take the spend of the
current UTC day or month over a cap (`RECEIVER_BUDGET_USD_PER_DAY` / `_PER_MONTH`). What counts as
spent in a period (by when the submission was recorded, or the job created for jobs the receiver
did not submit):

- a submission still `submitting` or `outcome_unknown`: its estimate (it may have been paid);
- a submitted job: its real `usage.cost` once known; a failed, cancelled or expired one without a
  cost: 0; otherwise (still running) its estimate;
- a submission upstream refused: 0;
- a job the receiver did not submit (registered, or known by webhook only): its real cost, 0 until
  then (there is no estimate for it).

Per-token caps: a `Cap` has an `owner` (a named token's, from its row; None: receiver-wide), and
every `SpendFact` a `token` (the submission's owner; `admin` for the built-in RECEIVER_API_TOKEN's;
a job not submitted here counts as its owner's, None when it has none); a cap with an owner counts
that owner's facts only, and only that owner's submits are checked against it.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from openrouter_video import CANCELLED, EXPIRED, FAILED

from .model import SubmissionState
from .submissions import OUTCOME_UNKNOWN, REFUSED, SUBMITTING

Period = Literal["day", "month"]
UnknownCost = Literal["refuse", "allow"]
UNKNOWN_COST_POLICIES: tuple[UnknownCost, ...] = ("refuse", "allow")
ADJECTIVE: dict[Period, str] = {"day": "daily", "month": "monthly"}
ADMIN_TOKEN = "admin"  # the built-in RECEIVER_API_TOKEN's name (domain.tokens.ADMIN_NAME)
_ENDED_UNPAID = frozenset({FAILED, CANCELLED, EXPIRED})
DAY = 86400.0


class OverBudget(Exception):
    """The submit would cross a cap, or its cost cannot be estimated under a cap (402, one line)."""


@dataclass(frozen=True, slots=True)
class Cap:
    period: Period
    usd: float
    owner: str | None = None  # None: receiver-wide; else a named token's name


@dataclass(frozen=True, slots=True)
class SpendFact:
    """One submission, or one job the receiver did not submit, as the store read it."""

    at: float  # when the submission was recorded (or the job created)
    model: str | None
    token: str | None  # who submitted it (None: not submitted through the receiver)
    submission_state: SubmissionState | None  # None: not submitted through the receiver
    estimate: float | None
    job_status: str | None
    job_cost: float | None


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """What the store needs to decide a submit under the caps, inside its check-and-record transaction."""

    caps: tuple[Cap, ...]
    estimate: float  # this job's estimate (0 when unknown and the setting allows it)
    owner: str | None
    now: float

    @property
    def since(self) -> float:
        """The start of the widest period a cap looks at: the facts to read."""
        return min(period_bounds(cap.period, self.now)[0] for cap in self.caps)


def counted(fact: SpendFact) -> float:
    """What `fact` counts toward a cap (see the module docstring)."""
    estimate = fact.estimate or 0.0
    if fact.submission_state is None:
        return fact.job_cost or 0.0
    if fact.submission_state == REFUSED:
        return 0.0
    if fact.submission_state in (SUBMITTING, OUTCOME_UNKNOWN):
        return fact.job_cost if fact.job_cost is not None else estimate
    if fact.job_cost is not None:
        return fact.job_cost
    return 0.0 if fact.job_status in _ENDED_UNPAID else estimate


class Row(Protocol):
    """A database row read by column name (sqlite3.Row, psycopg's dict rows)."""

    def __getitem__(self, key: str) -> Any: ...


def spend_fact(row: Row) -> SpendFact:
    """A row of the backends' spend query (at, model, submission_state, estimate, job_status,
    job_cost, owner) as a fact. Whose spend it is: a submission's owner (None: the built-in admin's);
    a job not submitted here, its owner's (None: nobody's, a webhook-only job)."""
    submitted = row["submission_state"] is not None
    return SpendFact(
        at=row["at"],
        model=row["model"],
        token=(row["owner"] or ADMIN_TOKEN) if submitted else row["owner"],
        submission_state=row["submission_state"],
        estimate=row["estimate"],
        job_status=row["job_status"],
        job_cost=row["job_cost"],
    )


def period_bounds(period: Period, now: float) -> tuple[float, float]:
    """The UTC calendar day or month holding `now`: [start, end) in unix seconds."""
    t = datetime.fromtimestamp(now, timezone.utc)
    if period == "day":
        start = datetime(t.year, t.month, t.day, tzinfo=timezone.utc).timestamp()
        return start, start + DAY
    days = calendar.monthrange(t.year, t.month)[1]
    start = datetime(t.year, t.month, 1, tzinfo=timezone.utc).timestamp()
    return start, start + days * DAY


def spent(cap: Cap, facts: Iterable[SpendFact], now: float) -> float:
    start, end = period_bounds(cap.period, now)
    return sum(
        counted(f) for f in facts if start <= f.at < end and (cap.owner is None or f.token == cap.owner)
    )


def refusal(check: BudgetCheck, facts: list[SpendFact]) -> str | None:
    """Why the submit must be refused (the first cap it would cross, with the figures), or None."""
    for cap in check.caps:
        if cap.owner is not None and cap.owner != check.owner:
            continue
        so_far = spent(cap, facts, check.now)
        if so_far + check.estimate > cap.usd + 1e-9:  # a job that lands exactly on the cap fits
            whose = f" for token {cap.owner!r}" if cap.owner else ""
            return (
                f"over budget: the {ADJECTIVE[cap.period]} cap{whose} is {usd(cap.usd)} (UTC {cap.period}), "
                f"{usd(so_far)} is spent so far, and this job is estimated at {usd(check.estimate)}; "
                "nothing was submitted"
            )
    return None


def unknown_cost_refusal(model: str, reason: str | None) -> str:
    return (
        f"the cost of this job cannot be estimated for {model} ({reason}), and a spending cap is set; "
        "nothing was submitted (RECEIVER_BUDGET_UNKNOWN_COST=allow lets such jobs through uncounted)"
    )


def usd(amount: float) -> str:
    return f"${amount:.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


# -- the usage report (GET /usage) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Spend of one UTC day, model and token: `estimated` sums the estimates of the submissions,
    `actual` the real costs known, `counted` what the caps count (see `counted`)."""

    day: str  # YYYY-MM-DD, UTC
    model: str | None
    token: str | None
    jobs: int
    estimated: float
    actual: float
    counted: float


@dataclass(frozen=True, slots=True)
class CapStatus:
    period: Period
    cap: float
    owner: str | None
    start: float
    end: float
    spent: float
    remaining: float


def usage_rows(facts: Iterable[SpendFact]) -> list[UsageRow]:
    """Facts summed by UTC day, model and token; oldest day first."""
    groups: dict[tuple[str, str | None, str | None], list[SpendFact]] = {}
    for fact in facts:
        day = datetime.fromtimestamp(fact.at, timezone.utc).strftime("%Y-%m-%d")
        groups.setdefault((day, fact.model, fact.token), []).append(fact)
    rows = [
        UsageRow(
            day,
            model,
            token,
            len(group),
            round(sum(f.estimate or 0.0 for f in group), 6),
            round(sum(f.job_cost or 0.0 for f in group), 6),
            round(sum(counted(f) for f in group), 6),
        )
        for (day, model, token), group in groups.items()
    ]
    return sorted(rows, key=lambda r: (r.day, r.model or "", r.token or ""))


def cap_statuses(caps: Iterable[Cap], facts: list[SpendFact], now: float) -> list[CapStatus]:
    """Each cap's current period, what it counts as spent, and what remains (never below 0)."""
    statuses = []
    for cap in caps:
        start, end = period_bounds(cap.period, now)
        so_far = round(spent(cap, facts, now), 6)
        statuses.append(
            CapStatus(
                cap.period, cap.usd, cap.owner, start, end, so_far, round(max(cap.usd - so_far, 0.0), 6)
            )
        )
    return statuses


def month_start(now: float) -> float:
    return period_bounds("month", now)[0]
