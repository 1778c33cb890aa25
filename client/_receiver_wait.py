"""Waiting for a job through the receiver: long-polls (`GET /jobs/{id}?wait=`), never a polling loop.

    record = rx.wait(job_id, timeout=600)     # ReceiverClient; `await rx.wait(...)` on the async one
    if record["status"] == "completed":
        ...                                   # every output is stored: record["outputs"][i]["url"]

Each request is held by the receiver until the job's status or an output's state changes (at most
LONG_POLL seconds, under the 60 s read timeout proxies often have); the loop asks again until the
job is finished: terminal, with every output downloaded or given up (`done`, `failed`, `gone`,
`deleted`). What it returns is the record as the receiver shows it; a failed job is returned, not
raised (its `status` and `error` say what happened). At the deadline: `JobNotFinished`. Transient
trouble (no answer, 429, 5xx: a replica restarting, say) is retried with a short backoff until the
deadline; anything else (401, 404, ...) raises at once, from the same error tree as the clients.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._exceptions import JobNotFinished, RateLimitError, TransportError, UpstreamError

DEFAULT_WAIT_TIMEOUT = 1200.0  # seconds a wait() lasts unless told (as the OpenRouter client's wait)
LONG_POLL = 25.0  # seconds one request asks the receiver to hold it (its maximum is 60)
ANSWER_SLACK = 15.0  # beyond the long-poll: the receiver's own reads, the network
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
UNFINISHED_OUTPUTS = frozenset({"pending", "downloading"})
TRANSIENT = (RateLimitError, UpstreamError, TransportError)
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0

# (path, query params, request timeout) -> the JSON object answered
Get = Callable[[str, dict[str, Any], httpx.Timeout], dict[str, Any]]
AsyncGet = Callable[[str, dict[str, Any], httpx.Timeout], Awaitable[dict[str, Any]]]


def finished(record: dict[str, Any]) -> bool:
    """Terminal, and no output still to download: the receiver will not change it any more."""
    outputs = record.get("outputs") or []
    return record.get("status") in TERMINAL and not any(
        isinstance(o, dict) and o.get("state") in UNFINISHED_OUTPUTS for o in outputs
    )


@dataclass
class WaitPlan:
    """One `wait()`: the deadline, the next long-poll, and the backoff after transient trouble."""

    job_id: str
    path: str
    timeout: float
    started: float = field(default_factory=time.monotonic)
    failures: int = 0
    last: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be a number of seconds above 0, got {self.timeout!r}")

    def remaining(self) -> float:
        return self.started + self.timeout - time.monotonic()

    def next_poll(self) -> tuple[dict[str, Any], httpx.Timeout] | None:
        """The next request's query and timeout; None: the deadline has passed."""
        left = self.remaining()
        if left <= 0:
            return None
        seconds = round(max(0.05, min(LONG_POLL, left)), 3)
        return {"wait": seconds}, httpx.Timeout(seconds + ANSWER_SLACK, connect=5.0)

    def answered(self, record: dict[str, Any]) -> bool:
        self.failures = 0
        self.last = record
        return finished(record)

    def backoff(self) -> float:
        """After transient trouble: how long to pause (never past the deadline)."""
        self.failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        return max(0.0, min(delay, self.remaining()))

    def gave_up(self, trouble: Exception | None) -> JobNotFinished:
        status = str((self.last or {}).get("status") or "unknown")
        error = JobNotFinished(self.job_id, status, time.monotonic() - self.started)
        error.__cause__ = trouble
        return error


def wait_sync(get: Get, plan: WaitPlan) -> dict[str, Any]:
    trouble: Exception | None = None
    while (poll := plan.next_poll()) is not None:
        params, timeout = poll
        try:
            record = get(plan.path, params, timeout)
        except TRANSIENT as exc:
            trouble = exc
            time.sleep(plan.backoff())
            continue
        if plan.answered(record):
            return record
    raise plan.gave_up(trouble)


async def wait_async(get: AsyncGet, plan: WaitPlan) -> dict[str, Any]:
    trouble: Exception | None = None
    while (poll := plan.next_poll()) is not None:
        params, timeout = poll
        try:
            record = await get(plan.path, params, timeout)
        except TRANSIENT as exc:
            trouble = exc
            await asyncio.sleep(plan.backoff())
            continue
        if plan.answered(record):
            return record
    raise plan.gave_up(trouble)
