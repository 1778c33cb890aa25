"""What a failed download attempt leads to: retry (when, and whether the attempt counts) or the end.

Each output is `pending -> downloading -> done`, or ends `gone` (404/410 upstream, or 409 a few
times) or `failed` (401/403, or attempts exhausted). Running out of disk space is the receiver's
problem, not the output's: it waits with a growing delay and never uses up a paid output's attempts.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Literal

from openrouter_video import (
    AuthenticationError,
    InsufficientStorageError,
    NotFoundError,
    OutputGoneError,
    PermissionDeniedError,
    RetryPolicy,
)

# What 409 means on the content endpoint is undocumented; it may be "not ready yet". A paid output
# is only given up as gone after a few 409s, while 404 and 410 are taken at their word.
CONFLICT_RETRIES = 3
# The space-wait delay stops growing here (the backoff's cap applies long before).
MAX_SPACE_WAIT_STEP = 30

Outcome = Literal["retry", "waiting_for_space", "gone", "failed"]


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """`retry`/`waiting_for_space`: back in the queue `delay` seconds from now (`count_attempt`: the
    attempt is used up); `gone`/`failed`: the output's final state. `error` is what the record says."""

    outcome: Outcome
    error: str
    delay: float = 0.0
    count_attempt: bool = True
    hint: str | None = None  # for the operator's log line

    @property
    def ends(self) -> bool:
        return self.outcome in ("gone", "failed")


def is_disk_full(exc: BaseException) -> bool:
    """The local disk filled up under a download (by someone else, meanwhile)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def plan_download_failure(
    exc: BaseException,
    *,
    attempts: int,
    max_attempts: int,
    backoff: RetryPolicy,
    space_waits: int = 1,
    free_above_floor: int | None = None,
) -> RetryPlan:
    """The plan after attempt number `attempts` (1-based) of an output failed with `exc`.

    `space_waits`: how many times in a row this output has waited for space, this time included (only
    the delay grows with it); `free_above_floor`: bytes free above the kept floor, for the record's text.
    """
    if isinstance(exc, (OutputGoneError, NotFoundError)):
        if exc.status_code == 409 and attempts < CONFLICT_RETRIES:
            return _retry_or_fail(exc, attempts, max_attempts, backoff)
        return RetryPlan("gone", str(exc))
    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
        return RetryPlan("failed", str(exc), hint="check OPENROUTER_API_KEY")
    if isinstance(exc, InsufficientStorageError):
        return _wait_for_space(
            f"need {exc.needed} bytes, {exc.free} free above the floor", space_waits, backoff
        )
    if is_disk_full(exc):
        assert isinstance(exc, OSError)
        free = f", {free_above_floor} free above the floor" if free_above_floor is not None else ""
        return _wait_for_space(f"the disk filled up ({exc.strerror}){free}", space_waits, backoff)
    return _retry_or_fail(exc, attempts, max_attempts, backoff)


def _retry_or_fail(exc: BaseException, attempts: int, max_attempts: int, backoff: RetryPolicy) -> RetryPlan:
    if attempts >= max_attempts:
        return RetryPlan("failed", str(exc))
    retry_after = getattr(exc, "retry_after", None)
    return RetryPlan("retry", str(exc), delay=backoff.delay(attempts - 1, retry_after))


def _wait_for_space(detail: str, waits: int, backoff: RetryPolicy) -> RetryPlan:
    delay = backoff.delay(min(max(waits, 1) - 1, MAX_SPACE_WAIT_STEP))
    return RetryPlan(
        "waiting_for_space", f"waiting for disk space: {detail}", delay=delay, count_attempt=False
    )
