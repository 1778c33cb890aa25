"""The storage interfaces (receiver.storage.base) on one SQLite file.

Every write goes through the file's one batching writer (its transaction is the claim: reading the
current state, the domain's decision and the stored change commit together); reads are async over
the file's read or scan connection. Wakeups are in-process events: one process serves the file.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Literal

from openrouter_video import TERMINAL_STATUSES, VideoJob

from ...domain.model import (
    AppliedBatch,
    AppliedDelivery,
    ApplyResult,
    Delivery,
    DownloadClaim,
    JobFilter,
    JobRecord,
    Page,
    PollClaim,
    RecordedDelivery,
)
from ...domain.retention import Policy, Pruned
from . import deliveries, jobs, queues
from ._file import SQLiteFile
from .retention import prune

if TYPE_CHECKING:
    import sqlite3

Topic = Literal["deliveries", "downloads", "jobs", "notifications"]


class LocalWakeups:
    """Wakeups within this process: one event per topic; a notify before the wait is not lost."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, topic: str) -> asyncio.Event:
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
        return event

    def notify(self, topic: Topic) -> None:
        self._event(topic).set()

    async def wait(self, topic: Topic, timeout: float) -> bool:
        event = self._event(topic)
        if not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                return False
        event.clear()
        return True


class SQLiteDeliveryLog:
    def __init__(self, file: SQLiteFile, wakeups: LocalWakeups, *, notify_default: str | None = None) -> None:
        self._file = file
        self._wakeups = wakeups
        self._notify_default = notify_default  # RECEIVER_NOTIFY_URL: jobs without their own are told there

    async def record(self, delivery: Delivery) -> RecordedDelivery:
        recorded = await self._file.write(deliveries.record_delivery, delivery)
        if not recorded.duplicate and delivery.selftest_job is None:
            self._wakeups.notify("deliveries")
        return recorded

    async def apply_pending(self, limit: int, *, isolate: bool = False) -> AppliedBatch:
        batch = await self._file.write(_apply_pending, limit, isolate, self._notify_default)
        self._queued(batch.deliveries)
        return batch

    async def apply_pending_for_job(self, job_id: str) -> list[AppliedDelivery]:
        applied = await self._file.write(
            deliveries.apply_pending_for_job, job_id, time.time(), self._notify_default
        )
        return self._queued(applied)

    async def reprocess(self, delivery_ids: list[int] | None) -> list[AppliedDelivery]:
        applied = await self._file.write(
            deliveries.reprocess_deliveries, delivery_ids, time.time(), notify_default=self._notify_default
        )
        return self._queued(applied)

    async def page(self, *, state: str | None, cursor: str | None, limit: int) -> Page:
        return self._file.read_now(deliveries.page_deliveries, state=state, cursor=cursor, limit=limit)

    async def pending_count(self) -> int:
        return await self._file.scan(deliveries.pending_count)

    def _queued(self, applied: list[AppliedDelivery]) -> list[AppliedDelivery]:
        if any(a.outputs_queued for a in applied):
            self._wakeups.notify("downloads")
        if applied:
            self._wakeups.notify("jobs")  # the waits on jobs (receiver/watch.py)
        if any(a.status in TERMINAL_STATUSES for a in applied):
            self._wakeups.notify("notifications")  # a job's end may have been written to the outbox
        return applied


def _apply_pending(
    conn: sqlite3.Connection, limit: int, isolate: bool, notify_default: str | None
) -> AppliedBatch:
    started = time.perf_counter()
    applied = deliveries.apply_pending(
        conn, limit, time.time(), isolate=isolate, notify_default=notify_default
    )
    return AppliedBatch(applied, time.perf_counter() - started)


class SQLiteJobs:
    def __init__(self, file: SQLiteFile, wakeups: LocalWakeups, *, notify_default: str | None = None) -> None:
        self._file = file
        self._wakeups = wakeups
        self._notify_default = notify_default

    async def get(self, job_id: str) -> JobRecord | None:
        return self._file.read_now(jobs.get_job, job_id)

    async def page(self, filters: JobFilter, *, cursor: str | None, limit: int) -> Page:
        return self._file.read_now(jobs.page_jobs, filters, cursor=cursor, limit=limit)

    async def register(
        self,
        job_id: str,
        *,
        model: str | None,
        prompt: str | None,
        first_poll_at: float,
        owner: str | None = None,
        notify_url: str | None = None,
    ) -> bool:
        created = await self._file.write(
            jobs.register_job,
            job_id,
            model=model,
            prompt=prompt,
            now=time.time(),
            first_poll_at=first_poll_at,
            owner=owner,
            notify_url=notify_url,
            notify_default=self._notify_default,
        )
        self._wakeups.notify("notifications")  # a job that already ended may be told now
        return created

    async def add_event(self, job_id: str, source: str, kind: str, detail: str | None = None) -> None:
        await self._file.write(jobs.add_event, job_id, time.time(), source, kind, None, detail)

    async def delete(self, job_id: str) -> list[str] | None:
        return await self._file.write(jobs.delete_job, job_id)

    async def counts_by_status(self) -> dict[str, int]:
        return await self._file.scan(jobs.jobs_by_status)

    async def prune(self, policy: Policy, now: float, *, dry_run: bool = False) -> Pruned:
        return await self._file.write(prune, policy, now, dry_run=dry_run)


class SQLiteDownloads:
    """`exclusive`: this process serves the file alone (it holds the data-dir lock), so claims left by
    any other worker are known dead at start and are recovered at once, not when their lease runs out."""

    def __init__(
        self,
        file: SQLiteFile,
        wakeups: LocalWakeups,
        *,
        worker: str,
        lease: float,
        exclusive: bool,
        notify_default: str | None = None,
    ) -> None:
        self._file = file
        self._wakeups = wakeups
        self.worker = worker
        self.lease = lease
        self.exclusive = exclusive
        self._notify_default = notify_default

    async def claim(self, now: float, limit: int) -> list[DownloadClaim]:
        return await self._file.write(
            queues.claim_downloads, now, limit, worker=self.worker, lease=self.lease
        )

    async def renew(self, outputs: list[tuple[str, int]]) -> int:
        return await self._file.write(queues.renew_claims, outputs, self.worker, time.time() + self.lease)

    async def recover(self) -> int:
        if not self.exclusive:
            return 0  # their leases run out by themselves
        return await self._file.write(queues.release_claims_of_others, self.worker, time.time())

    async def finish(self, job_id: str, index: int, *, content_key: str, size: int, sha256: str) -> bool:
        return self._changed(
            await self._file.write(
                queues.finish_download,
                job_id,
                index,
                content_key=content_key,
                size=size,
                sha256=sha256,
                now=time.time(),
                worker=self.worker,
                notify_default=self._notify_default,
            )
        )

    async def retry(
        self, job_id: str, index: int, *, next_at: float, error: str, count_attempt: bool = True
    ) -> bool:
        return await self._file.write(
            queues.retry_download,
            job_id,
            index,
            next_at=next_at,
            error=error,
            now=time.time(),
            worker=self.worker,
            count_attempt=count_attempt,
        )

    async def end(self, job_id: str, index: int, *, state: Literal["gone", "failed"], error: str) -> bool:
        return self._changed(
            await self._file.write(
                queues.end_download,
                job_id,
                index,
                state=state,
                error=error,
                now=time.time(),
                worker=self.worker,
                notify_default=self._notify_default,
            )
        )

    def _changed(self, written: bool) -> bool:
        """After an output's end (done, gone, failed): the waits on its job wake, and the notifier (the
        job's last output may have written its notification)."""
        if written:
            self._wakeups.notify("jobs")
            self._wakeups.notify("notifications")
        return written

    async def content_key(self, job_id: str, index: int) -> str | None:
        return self._file.read_now(queues.content_key, job_id, index)

    async def depth(self) -> int:
        return await self._file.scan(queues.queue_depth)

    async def next_due(self) -> float | None:
        return self._file.read_now(queues.next_download_at)

    async def live_claims(self, now: float) -> list[tuple[str, int]]:
        return self._file.read_now(queues.live_claims, now)


class SQLitePolls:
    def __init__(
        self,
        file: SQLiteFile,
        wakeups: LocalWakeups,
        *,
        worker: str,
        lease: float,
        notify_default: str | None = None,
    ) -> None:
        self._file = file
        self._wakeups = wakeups
        self.worker = worker
        self.lease = lease
        self._notify_default = notify_default

    async def claim(self, now: float, limit: int) -> list[PollClaim]:
        return await self._file.write(queues.claim_polls, now, limit, worker=self.worker, lease=self.lease)

    async def apply_poll(self, job: VideoJob) -> ApplyResult:
        result = await self._file.write(
            jobs.apply_poll, job, now=time.time(), notify_default=self._notify_default
        )
        if result.outputs_queued:
            self._wakeups.notify("downloads")
        if result.decision != "same":
            self._wakeups.notify("jobs")
            self._wakeups.notify("notifications")
        return result

    async def schedule(self, job_id: str, next_at: float | None, *, attempted: bool = True) -> None:
        await self._file.write(
            queues.schedule_poll, job_id, next_at, attempted=attempted, worker=self.worker, now=time.time()
        )

    async def not_found_upstream(self, job_id: str, detail: str) -> None:
        await self._file.write(jobs.mark_not_found_upstream, job_id, time.time(), detail)
        self._wakeups.notify("jobs")


class SQLiteHealth:
    def __init__(self, file: SQLiteFile) -> None:
        self._file = file

    async def check_writable(self) -> None:
        """Write a delivery row and roll it back, then commit: the path a webhook takes, end to end."""
        await self._file.write(deliveries.probe_delivery_write)

    def writes_waiting(self) -> int:
        """Writes in the current batch or queued behind it: how hard the store is being pushed right now."""
        return self._file.writes_waiting
