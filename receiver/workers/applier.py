"""Applying stored webhook deliveries to the job records, oldest first, right behind the intake.

The webhook answer waits only for the delivery to be on disk (`pending`). This task then parses
each stored body and moves its job along (state machine, events, the fetch queue), in the order the
deliveries were stored, and writes the delivery's one canonical log line.

Intake comes first. While deliveries arrive, the applier works in small chunks (short pauses of
the loop); when they arrive faster than the loop can serve (a burst), it holds itself to a small
share of the loop (`SHARE_WHEN_SATURATED`), so the burst is acknowledged at full speed and applied
right after it. Otherwise it applies as fast as it can. The backlog is the `pending` rows, so it
survives a crash and is picked up at start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from ..domain.model import AppliedBatch, AppliedDelivery
from ..metrics import Metrics
from ..storage.base import Stores, StoreUnavailable

log = structlog.get_logger("receiver.applier")

SHARE_WHEN_SATURATED = 0.05  # of the event loop's time, while deliveries arrive faster than it can serve
SATURATED_QUEUE = 12  # writes per commit: requests are queueing, the loop is saturated
CHUNK_UNDER_LOAD = 16  # deliveries per transaction while deliveries arrive: short pauses of the loop
CHUNK_IDLE = 64
INTAKE_QUIET_AFTER = 0.1  # seconds without a delivery before the applier takes bigger chunks
RECHECK = 5.0  # also look for pending rows now and then (e.g. written by `openrouter-video reprocess`)
RETRY_AFTER_ERROR = 1.0
_MAX_NOTES = 100_000


class Applier:
    def __init__(self, stores: Stores, metrics: Metrics) -> None:
        self.deliveries = stores.deliveries
        self.stores = stores
        self.metrics = metrics
        self._last_intake = -1e9
        # What only the intake knows (request id, client, answer time), for the canonical log line.
        self._notes: dict[int, dict[str, object]] = {}
        # Told of each delivery taken out of pending (applied or failed), in this process: the
        # dashboard's live updates listen here so an open page changes at once, not at its next look.
        self.listeners: list[Callable[[AppliedDelivery], None]] = []

    def received(self, delivery_id: int, **fields: object) -> None:
        """A delivery was stored (pending): apply it soon."""
        if len(self._notes) >= _MAX_NOTES:  # the applier is far behind: keep the newest notes
            self._notes.pop(next(iter(self._notes)))
        self._notes[delivery_id] = fields
        self._last_intake = time.monotonic()  # the store woke the applier (Wakeups "deliveries")

    async def run(self) -> None:
        while True:
            under_load = time.monotonic() - self._last_intake < INTAKE_QUIET_AFTER
            limit = CHUNK_UNDER_LOAD if under_load else CHUNK_IDLE
            try:
                batch = await self.deliveries.apply_pending(limit)
            except StoreUnavailable as exc:
                log.error("apply.failed", error=str(exc))
                await asyncio.sleep(RETRY_AFTER_ERROR)
                continue
            except Exception:
                # A delivery the code cannot apply (a bug): find it, mark it failed, go on with the rest.
                log.exception("apply.crashed", limit=limit)
                batch = await self._apply_carefully(limit)
            for applied in batch.deliveries:
                self._report(applied)
            if len(batch.deliveries) < limit:  # caught up
                await self.stores.wakeups.wait("deliveries", RECHECK)
            elif under_load and self.stores.health.writes_waiting() >= SATURATED_QUEUE:
                # A backlog and no time to spare: acknowledging comes first, applying gets a small share.
                await asyncio.sleep(batch.seconds * (1 - SHARE_WHEN_SATURATED) / SHARE_WHEN_SATURATED)

    async def apply_job_now(self, job_id: str) -> int:
        """Apply one job's pending deliveries ahead of the queue (for a query that must see them)."""
        try:
            applied = await self.deliveries.apply_pending_for_job(job_id)
        except StoreUnavailable as exc:
            log.error("apply.failed", error=str(exc), job_id=job_id)
            return 0
        except Exception:  # a delivery the code cannot apply: the applier isolates it in its turn
            log.exception("apply.crashed", job_id=job_id)
            return 0
        for delivery in applied:
            self._report(delivery)
        return len(applied)

    async def reprocess(self, delivery_ids: list[int] | None) -> list[AppliedDelivery]:
        """Apply stored deliveries not applied (failed, or pending) now, each reported as the applier
        reports its own (log line, metrics)."""
        applied = await self.deliveries.reprocess(delivery_ids)
        for delivery in applied:
            self._report(delivery)
        return applied

    async def _apply_carefully(self, limit: int) -> AppliedBatch:
        """One delivery per transaction, each in a SAVEPOINT: a delivery that raises is marked failed."""
        applied: list[AppliedDelivery] = []
        seconds = 0.0
        try:
            for _ in range(limit):
                batch = await self.deliveries.apply_pending(1, isolate=True)
                applied += batch.deliveries
                seconds += batch.seconds
                if not batch.deliveries:
                    break
        except StoreUnavailable as exc:
            log.error("apply.failed", error=str(exc))
            await asyncio.sleep(RETRY_AFTER_ERROR)
        return AppliedBatch(applied, seconds)

    def _report(self, applied: AppliedDelivery) -> None:
        notes = self._notes.pop(applied.delivery_id, {})
        for listener in self.listeners:
            listener(applied)
        fields = {
            "delivery_id": applied.delivery_id,
            "idempotency_key": applied.idempotency_key,
            "job_id": applied.job_id,
            "status": applied.status,
            "applied_after_ms": round((time.time() - applied.received_at) * 1000, 1),
            **notes,
        }
        if applied.applied:
            self.metrics.inc("receiver_deliveries_applied_total", result="applied")
            log.info("delivery.applied", outcome="accepted", decision=applied.decision, **fields)
        else:
            self.metrics.inc("receiver_deliveries_applied_total", result="unprocessed")
            log.error("delivery.applied", outcome="unprocessed", error=applied.error, **fields)
