"""Polling, only as the fallback for webhooks that never arrive.

A job registered with the receiver gets `next_poll_at = submitted + fallback_after`. A webhook that
makes it terminal clears that, so with webhooks flowing no job is ever polled. A job still open at
its time is claimed (worker id and lease: two replicas never poll it at once) and polled with the
client's backoff until terminal, too old or unknown upstream (`receiver.domain.polling`); each
answer goes through the same decisions and download queue as a webhook.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from openrouter_video import AsyncOpenRouterVideo, OpenRouterVideoError, RetryPolicy

from ..domain.model import PollClaim
from ..domain.polling import PollPlan, plan_before_poll, plan_poll_answer, plan_poll_failure
from ..metrics import Metrics
from ..settings import Settings
from ..storage.base import Stores, StoreUnavailable

log = structlog.get_logger("receiver.fallback")


class FallbackPoller:
    def __init__(
        self,
        stores: Stores,
        client: AsyncOpenRouterVideo,
        settings: Settings,
        metrics: Metrics,
        *,
        tick: float | None = None,
    ) -> None:
        self.stores = stores
        self.polls = stores.polls
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.backoff = RetryPolicy(initial=settings.poll_first_interval, cap=settings.poll_max_interval)
        self.tick = tick if tick is not None else min(1.0, max(0.05, settings.fallback_after / 10))
        self._limit = max(4, settings.download_concurrency * 4)

    async def run(self) -> None:
        while True:
            try:
                claimed = await self.polls.claim(time.time(), self._limit)
                if claimed:
                    await asyncio.gather(*(self._poll(claim) for claim in claimed))
            except StoreUnavailable as exc:
                log.error("poll.store_unavailable", error=str(exc))
            except Exception:  # a bug must not end the fallback for good; log it and go on
                log.exception("poll.crashed")
            await asyncio.sleep(self.tick)

    async def _poll(self, claim: PollClaim) -> None:
        now = time.time()
        with structlog.contextvars.bound_contextvars(job_id=claim.job_id):
            plan = plan_before_poll(claim, now=now, max_age=self.settings.fallback_max_age)
            if plan is not None:
                log.error("poll.gave_up", age=round(now - (claim.submitted_at or claim.created_at)))
                await self._record(claim, plan)
                return
            try:
                job = await self.client.get(claim.job_id)
            except OpenRouterVideoError as exc:
                plan = plan_poll_failure(
                    exc,
                    attempts=claim.poll_attempts,
                    now=now,
                    backoff=self.backoff,
                    max_interval=self.settings.poll_max_interval,
                )
                self.metrics.inc("receiver_fallback_polls_total", result=plan.outcome)
                fields: dict[str, object] = {"hint": plan.hint} if plan.hint else {}
                if plan.outcome == "not_found":
                    fields["giving_up"] = plan.next_at is None
                (log.error if plan.outcome == "forbidden" else log.warning)(
                    "poll.answered", outcome=plan.outcome, error=str(exc), **fields
                )
                await self._record(claim, plan)
                return
            result = await self.polls.apply_poll(job)
            self.metrics.inc("receiver_fallback_polls_total", result=job.status)
            log.info("poll.answered", outcome=job.status, decision=result.decision)
            await self._record(
                claim, plan_poll_answer(job, attempts=claim.poll_attempts, now=now, backoff=self.backoff)
            )

    async def _record(self, claim: PollClaim, plan: PollPlan) -> None:
        """The next poll (which frees the claim), and the event that ends the polling, if it ends."""
        await self.polls.schedule(claim.job_id, plan.next_at, attempted=plan.attempted)
        if plan.not_found_upstream is not None:
            await self.polls.not_found_upstream(claim.job_id, plan.not_found_upstream)
        if plan.gave_up is not None:
            await self.stores.jobs.add_event(claim.job_id, "poll", "fallback_gave_up", plan.gave_up)
