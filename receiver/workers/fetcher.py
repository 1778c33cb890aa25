"""Downloads completed jobs' outputs from the durable queue, after the webhook was answered.

Each output is claimed under a lease that this fetcher renews while the download runs; only the
claimant records its outcome. A worker that dies loses its claims when their leases run out (at
once for a store this process serves alone), and partial downloads are swept at start: a partial
is never recorded as done. The download streams into the content store's sink (a local path, or
an S3 multipart upload); what a failure leads to is `receiver.domain.downloads.plan_download_failure`.

A download that would eat into `RECEIVER_MIN_FREE_BYTES` (the room the database and webhooks need)
of a local content store is not started, or is stopped before it crosses the floor: the output
waits for disk space with a growing delay, and those waits never use up its attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from openrouter_video import (
    AsyncDownloadTarget,
    AsyncOpenRouterVideo,
    OpenRouterVideoError,
    RetryPolicy,
    VideoJob,
)

from ..domain.downloads import RetryPlan, is_disk_full, plan_download_failure
from ..domain.model import DownloadClaim
from ..metrics import Metrics
from ..settings import Settings
from ..storage.base import Stores, StoreUnavailable

log = structlog.get_logger("receiver.fetcher")

_IDLE_RECHECK = 5.0
# A partial upload older than this is abandoned (its replica died): swept at start when replicas
# share the content store (with the store to itself, a process sweeps every partial).
PARTIAL_MAX_AGE = 24 * 3600.0


def _preload_http_backends() -> None:
    """Import what httpx loads on its first request, now: later it would pause the event loop (~70 ms)
    in the middle of a webhook burst."""
    import importlib

    for module in ("anyio._backends._asyncio", "httpcore._backends.anyio"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


class Fetcher:
    def __init__(
        self, stores: Stores, client: AsyncOpenRouterVideo, settings: Settings, metrics: Metrics
    ) -> None:
        self.stores = stores
        self.queue = stores.downloads
        self.content = stores.content
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.backoff = RetryPolicy(
            max_retries=settings.download_max_attempts,
            initial=settings.download_retry_initial,
            cap=settings.download_retry_cap,
        )
        self._slot_freed = asyncio.Event()  # a download ended: room for the next (this process only)
        self._active: set[asyncio.Task[None]] = set()
        self._claims: set[tuple[str, int]] = set()  # outputs this fetcher is downloading (leases to renew)
        # How often each output waited for space in a row: only the delay grows with it (the attempts
        # are given back in the store, so a restart forgetting this costs nothing but a shorter wait).
        self._space_waits: dict[tuple[str, int], int] = {}

    async def run(self) -> None:
        _preload_http_backends()
        await self._recover()
        renewing = asyncio.create_task(self._renew_leases(), name="fetcher-leases")
        try:
            while True:
                self._slot_freed.clear()
                free = self.settings.download_concurrency - len(self._active)
                if free > 0:
                    try:
                        claimed = await self.queue.claim(time.time(), free)
                    except StoreUnavailable as exc:
                        log.error("download.claim_failed", error=str(exc))
                        claimed = []
                    for claim in claimed:
                        task = asyncio.create_task(self._download(claim))
                        self._active.add(task)
                        task.add_done_callback(self._done)
                if len(self._active) >= self.settings.download_concurrency:
                    # Every slot busy: only a finished download can make room, and it wakes us. Under
                    # a webhook burst this skips a query and a timer per wake-up.
                    await self._slot_freed.wait()
                    continue
                await self._sleep(await self._idle_timeout())
        finally:
            renewing.cancel()
            for task in self._active:
                task.cancel()
            await asyncio.gather(renewing, *self._active, return_exceptions=True)

    async def _sleep(self, timeout: float) -> None:
        """Until new work may be due (queued here or, for a shared store, by another replica), a slot
        freed, or the timeout."""
        queued = asyncio.ensure_future(self.stores.wakeups.wait("downloads", timeout))
        freed = asyncio.ensure_future(self._slot_freed.wait())
        try:
            await asyncio.wait((queued, freed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            queued.cancel()
            freed.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self._slot_freed.set()

    async def _idle_timeout(self) -> float:
        try:
            next_at = await self.queue.next_due()
        except StoreUnavailable:
            next_at = None
        if next_at is None:
            return _IDLE_RECHECK
        return min(_IDLE_RECHECK, max(0.01, next_at - time.time()))

    async def _recover(self) -> None:
        """At start: take back what a dead worker left in flight, and sweep abandoned partials."""
        try:
            recovered = await self.queue.recover()
            older_than = None if self.stores.exclusive else time.time() - PARTIAL_MAX_AGE
            removed = await self.content.sweep_partials(older_than)
        except StoreUnavailable as exc:
            log.error("download.recover_failed", error=str(exc))
            return
        if recovered or removed:
            log.info("download.resumed", recovered=recovered, partial_files_removed=removed)

    async def _renew_leases(self) -> None:
        """Keep this fetcher's claims alive while their downloads run (a third of the lease apart)."""
        while True:
            await asyncio.sleep(self.queue.lease / 3)
            if self._claims:
                try:
                    await self.queue.renew(sorted(self._claims))
                except StoreUnavailable as exc:
                    log.error("download.renew_failed", error=str(exc))

    async def _download(self, claim: DownloadClaim) -> None:
        output = (claim.job_id, claim.index)
        self._claims.add(output)
        try:
            with structlog.contextvars.bound_contextvars(job_id=claim.job_id, output=claim.index):
                await self._download_claimed(claim, claim.attempts + 1)
        finally:
            self._claims.discard(output)

    async def _download_claimed(self, claim: DownloadClaim, attempts: int) -> None:
        started = time.perf_counter()
        job_id, index = claim.job_id, claim.index
        try:
            key = self.content.key(job_id, index)
            job = VideoJob.from_api({**claim.upstream, "id": job_id, "status": "completed"})
            keep_free = self.settings.min_free_bytes if self.content.free_bytes() is not None else None
            sink = await self.content.sink(key)
            assert isinstance(sink, (str, AsyncDownloadTarget)), f"not a download target: {sink!r}"
            result = await self.client.download(job, index, sink, keep_free=keep_free)
        except asyncio.CancelledError:
            raise  # shutdown: the claim stays; its lease runs out (or the next start recovers it)
        except Exception as exc:
            if not isinstance(exc, (OpenRouterVideoError, OSError, ValueError)):
                log.exception("download.crashed", attempts=attempts)  # a bug: retried later, loudly
            await self._failed(claim, attempts, exc)
            return
        self._space_waits.pop((job_id, index), None)
        try:
            recorded = await self.queue.finish(
                job_id, index, content_key=key, size=result.bytes, sha256=result.sha256
            )
        except StoreUnavailable as exc:
            # The claim stays; its lease runs out and the output is fetched again.
            log.error("download.unrecorded", error=str(exc))
            return
        if not recorded:
            log.warning("download.claim_lost", hint="another worker took this output over")
            return
        self.metrics.inc("receiver_downloads_total", result="done")
        self.metrics.inc("receiver_download_bytes_total", result.bytes)
        log.info(
            "download.attempt",
            outcome="done",
            bytes=result.bytes,
            sha256=result.sha256,
            attempts=attempts,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _failed(self, claim: DownloadClaim, attempts: int, exc: BaseException) -> None:
        output = (claim.job_id, claim.index)
        waits = self._space_waits.get(output, 0) + 1
        free = await asyncio.to_thread(self._free_above_floor) if is_disk_full(exc) else None
        plan = plan_download_failure(
            exc,
            attempts=attempts,
            max_attempts=self.settings.download_max_attempts,
            backoff=self.backoff,
            space_waits=waits,
            free_above_floor=free,
        )
        if plan.outcome == "waiting_for_space":
            self._space_waits[output] = waits
        elif plan.ends:
            self._space_waits.pop(output, None)
        self.metrics.inc("receiver_downloads_total", result=plan.outcome)
        self._log(plan, attempts, waits)
        try:
            if plan.ends:
                assert plan.outcome in ("gone", "failed")
                await self.queue.end(claim.job_id, claim.index, state=plan.outcome, error=plan.error)
            else:
                await self.queue.retry(
                    claim.job_id,
                    claim.index,
                    next_at=time.time() + plan.delay,
                    error=plan.error,
                    count_attempt=plan.count_attempt,
                )
        except StoreUnavailable as store_exc:
            log.error("download.unrecorded", error=str(store_exc))

    def _log(self, plan: RetryPlan, attempts: int, waits: int) -> None:
        if plan.outcome == "waiting_for_space":
            log.warning(
                "download.waiting_for_space", error=plan.error, waits=waits, retry_in=round(plan.delay, 2)
            )
        elif plan.outcome == "retry":
            log.warning(
                "download.attempt",
                outcome="retry",
                error=plan.error,
                attempts=attempts,
                retry_in=round(plan.delay, 2),
            )
        else:
            hint = {"hint": plan.hint} if plan.hint else {}
            log.error("download.attempt", outcome=plan.outcome, error=plan.error, attempts=attempts, **hint)

    def _free_above_floor(self) -> int:
        return max(0, (self.content.free_bytes() or 0) - self.settings.min_free_bytes)
