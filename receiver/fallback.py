"""Polling, only as the fallback for webhooks that never arrive.

A job registered with the receiver gets `next_poll_at = submitted + fallback_after`. A webhook that
makes it terminal clears that, so with webhooks flowing no job is ever polled. A job still open at
its time is polled with the client's backoff until terminal or `fallback_max_age`; each answer
goes through the same state machine and fetch queue as a webhook.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from openrouter_video import (
    AsyncOpenRouterVideo,
    AuthenticationError,
    NotFoundError,
    OpenRouterVideoError,
    PermissionDeniedError,
    RetryPolicy,
)

from .fetcher import Fetcher
from .metrics import Metrics
from .settings import Settings
from .store import JobStore, StoreUnavailable

log = structlog.get_logger("receiver.fallback")

_MAX_NOT_FOUND = 3


class FallbackPoller:
    def __init__(
        self,
        store: JobStore,
        client: AsyncOpenRouterVideo,
        fetcher: Fetcher,
        settings: Settings,
        metrics: Metrics,
        *,
        tick: float | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.fetcher = fetcher
        self.settings = settings
        self.metrics = metrics
        self.backoff = RetryPolicy(initial=settings.poll_first_interval, cap=settings.poll_max_interval)
        self.tick = tick if tick is not None else min(1.0, max(0.05, settings.fallback_after / 10))
        self._limit = max(4, settings.download_concurrency * 4)

    async def run(self) -> None:
        while True:
            try:
                due = await self.store.due_polls(time.time(), self._limit)
                if due:
                    await asyncio.gather(*(self._poll(row) for row in due))
            except StoreUnavailable as exc:
                log.error("poll.store_unavailable", error=str(exc))
            except Exception:  # a bug must not end the fallback for good; log it and go on
                log.exception("poll.crashed")
            await asyncio.sleep(self.tick)

    async def _poll(self, row: dict) -> None:
        job_id, attempts = row["id"], row["poll_attempts"]
        now = time.time()
        born = row["submitted_at"] or row["created_at"]
        with structlog.contextvars.bound_contextvars(job_id=job_id):
            if now - born > self.settings.fallback_max_age:
                await self.store.schedule_poll(job_id, None, attempted=False)
                await self.store.add_event(
                    job_id,
                    "poll",
                    "fallback_gave_up",
                    f"not terminal after {self.settings.fallback_max_age:.0f}s",
                )
                log.error("poll.gave_up", age=round(now - born))
                return
            try:
                job = await self.client.get(job_id)
            except NotFoundError as exc:
                self.metrics.inc("receiver_fallback_polls_total", result="not_found")
                stop = attempts + 1 >= _MAX_NOT_FOUND
                log.warning("poll.answered", outcome="not_found", error=str(exc), giving_up=stop)
                await self.store.schedule_poll(job_id, None if stop else now + self.backoff.delay(attempts))
                if stop:
                    await self.store.mark_not_found_upstream(
                        job_id,
                        f"not found upstream: OpenRouter answered 404 to {_MAX_NOT_FOUND} polls; "
                        "no longer polled (check the id, or DELETE /jobs/{id} to drop the record)",
                    )
                return
            except (AuthenticationError, PermissionDeniedError) as exc:
                self.metrics.inc("receiver_fallback_polls_total", result="forbidden")
                log.error(
                    "poll.answered", outcome="forbidden", error=str(exc), hint="check OPENROUTER_API_KEY"
                )
                await self.store.schedule_poll(job_id, now + self.settings.poll_max_interval)
                return
            except OpenRouterVideoError as exc:
                self.metrics.inc("receiver_fallback_polls_total", result="error")
                log.warning("poll.answered", outcome="error", error=str(exc))
                await self.store.schedule_poll(
                    job_id, now + self.backoff.delay(attempts, getattr(exc, "retry_after", None))
                )
                return
            result = await self.store.apply_poll(job)
            self.metrics.inc("receiver_fallback_polls_total", result=job.status)
            log.info("poll.answered", outcome=job.status, decision=result.decision)
            if result.outputs_queued:
                self.fetcher.wake()
            await self.store.schedule_poll(
                job_id, None if job.is_terminal else now + self.backoff.delay(attempts)
            )
