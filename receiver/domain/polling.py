"""The fallback poller's decisions: when to poll a job again, when to give up on it.

A registered job is polled only if its webhook did not make it terminal in time; then with the
client's backoff until it is terminal, too old (`fallback_max_age`), or unknown upstream (404 on
MAX_NOT_FOUND polls).
"""

from __future__ import annotations

from dataclasses import dataclass

from openrouter_video import (
    AuthenticationError,
    NotFoundError,
    OpenRouterVideoError,
    PermissionDeniedError,
    RetryPolicy,
    VideoJob,
)

from .model import PollClaim

MAX_NOT_FOUND = 3


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What to record after (or instead of) a poll: the next poll (None: no more) and why it stops.

    `outcome`: the metrics label (`not_found`, `forbidden`, `error`, `gave_up`, or the job's status);
    `attempted`: counts as a poll attempt; `not_found_upstream` / `gave_up`: the detail of the event
    that ends the polling, when it ends so.
    """

    outcome: str
    next_at: float | None
    attempted: bool = True
    not_found_upstream: str | None = None
    gave_up: str | None = None
    hint: str | None = None


def plan_before_poll(claim: PollClaim, *, now: float, max_age: float) -> PollPlan | None:
    """None: poll it. A plan: do not, the job is too old for the fallback (it gives up, once)."""
    born = claim.submitted_at or claim.created_at
    if now - born <= max_age:
        return None
    return PollPlan("gave_up", None, attempted=False, gave_up=f"not terminal after {max_age:.0f}s")


def plan_poll_answer(job: VideoJob, *, attempts: int, now: float, backoff: RetryPolicy) -> PollPlan:
    """Upstream answered with the job (applied like a webhook): poll again unless it is terminal."""
    return PollPlan(job.status, None if job.is_terminal else now + backoff.delay(attempts))


def plan_poll_failure(
    exc: OpenRouterVideoError, *, attempts: int, now: float, backoff: RetryPolicy, max_interval: float
) -> PollPlan:
    """Upstream did not answer with the job. `attempts`: polls made before this one."""
    if isinstance(exc, NotFoundError):
        if attempts + 1 >= MAX_NOT_FOUND:
            detail = (
                f"not found upstream: OpenRouter answered 404 to {MAX_NOT_FOUND} polls; "
                "no longer polled (check the id, or DELETE /jobs/{id} to drop the record)"
            )
            return PollPlan("not_found", None, not_found_upstream=detail)
        return PollPlan("not_found", now + backoff.delay(attempts))
    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
        return PollPlan("forbidden", now + max_interval, hint="check OPENROUTER_API_KEY")
    return PollPlan("error", now + backoff.delay(attempts, getattr(exc, "retry_after", None)))
