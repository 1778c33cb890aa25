"""Downloads completed jobs' outputs from the durable queue in SQLite, after the webhook was answered.

Each output is `pending → downloading → done`, or `gone` (404/409/410 upstream) or `failed`
(401/403, or attempts exhausted). A download is claimed under a lease that this fetcher renews while
it runs; only the claimant records its outcome. A worker that dies loses its claims when their
leases run out (at once for the SQLite store, which one process serves alone), and `.part`
leftovers are deleted at start: a partial file is never recorded as done.

A download that would eat into `RECEIVER_MIN_FREE_BYTES` (the room the database and webhooks need)
is not started, or is stopped before it crosses the floor: the output waits for disk space with a
growing delay, and those waits never use up its attempts (the store gives the attempt back).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import shutil
import time

import structlog

from openrouter_video import (
    AsyncOpenRouterVideo,
    AuthenticationError,
    InsufficientStorageError,
    NotFoundError,
    OpenRouterVideoError,
    OutputGoneError,
    PermissionDeniedError,
    RetryPolicy,
    VideoJob,
)

from .content import ContentStore
from .metrics import Metrics
from .settings import Settings
from .store import JobStore, StoreUnavailable

log = structlog.get_logger("receiver.fetcher")

_GONE = (OutputGoneError, NotFoundError)
_FORBIDDEN = (AuthenticationError, PermissionDeniedError)
_IDLE_RECHECK = 5.0
# What 409 means on the content endpoint is undocumented; it may be "not ready yet". A paid output
# is only given up as gone after a few 409s, while 404 and 410 are taken at their word.
_CONFLICT_RETRIES = 3
# The space-wait delay stops growing here (the backoff's cap applies long before).
_MAX_SPACE_WAIT_STEP = 30


def _preload_http_backends() -> None:
    """Import what httpx loads on its first request, now: later it would pause the event loop (~70 ms)
    in the middle of a webhook burst."""
    import importlib

    for module in ("anyio._backends._asyncio", "httpcore._backends.anyio"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


class Fetcher:
    def __init__(
        self,
        store: JobStore,
        client: AsyncOpenRouterVideo,
        content: ContentStore,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.client = client
        self.content = content
        self.settings = settings
        self.metrics = metrics
        self.backoff = RetryPolicy(
            max_retries=settings.download_max_attempts,
            initial=settings.download_retry_initial,
            cap=settings.download_retry_cap,
        )
        self._wake = asyncio.Event()
        self._active: set[asyncio.Task[None]] = set()
        self._claims: set[tuple[str, int]] = set()  # outputs this fetcher is downloading (leases to renew)
        self._recover = True  # at start: take back whatever a dead worker left in flight
        # How often each output waited for space in a row: only the delay grows with it (the attempts
        # are given back in the store, so a restart forgetting this costs nothing but a shorter wait).
        self._space_waits: dict[tuple[str, int], int] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        _preload_http_backends()
        renewing = asyncio.create_task(self._renew_leases(), name="fetcher-leases")
        try:
            while True:
                self._wake.clear()
                if self._recover:
                    await self._recover_claims()
                free = self.settings.download_concurrency - len(self._active)
                if free > 0:
                    try:
                        claimed = await self.store.claim_downloads(time.time(), free)
                    except StoreUnavailable as exc:
                        log.error("download.claim_failed", error=str(exc))
                        claimed = []
                    for item in claimed:
                        task = asyncio.create_task(self._download(item))
                        self._active.add(task)
                        task.add_done_callback(self._done)
                if len(self._active) >= self.settings.download_concurrency:
                    # Every slot busy: only a finished download can make room, and it wakes us. Under
                    # a webhook burst this skips a query and a timer per wake-up.
                    await self._wake.wait()
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle_timeout())
        finally:
            renewing.cancel()
            for task in self._active:
                task.cancel()
            await asyncio.gather(renewing, *self._active, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self._wake.set()

    def _idle_timeout(self) -> float:
        next_at = self.store.next_download_at()
        if next_at is None:
            return _IDLE_RECHECK
        return min(_IDLE_RECHECK, max(0.01, next_at - time.time()))

    async def _recover_claims(self) -> None:
        try:
            recovered = await self.store.recover_claims()
        except StoreUnavailable as exc:
            log.error("download.recover_failed", error=str(exc))
            return
        removed = await asyncio.to_thread(self.content.remove_partials)
        self._recover = False
        if recovered or removed:
            log.info("download.resumed", recovered=recovered, partial_files_removed=removed)

    async def _renew_leases(self) -> None:
        """Keep this fetcher's claims alive while their downloads run (a third of the lease apart)."""
        while True:
            await asyncio.sleep(self.store.lease / 3)
            if self._claims:
                try:
                    await self.store.renew_claims(sorted(self._claims))
                except StoreUnavailable as exc:
                    log.error("download.renew_failed", error=str(exc))

    async def _download(self, item: dict) -> None:
        job_id, index, attempts = item["job_id"], item["idx"], item["attempts"] + 1
        self._claims.add((job_id, index))
        try:
            await self._download_claimed(item, job_id, index, attempts)
        finally:
            self._claims.discard((job_id, index))

    async def _download_claimed(self, item: dict, job_id: str, index: int, attempts: int) -> None:
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(job_id=job_id, output=index):
            upstream = json.loads(item["upstream"] or "{}")
            try:
                job = VideoJob.from_api({**upstream, "id": job_id, "status": "completed"})
                result = await self.client.download(
                    job,
                    index,
                    self.content.destination(job_id, index),
                    keep_free=self.settings.min_free_bytes,
                )
            except asyncio.CancelledError:
                raise  # shutdown: the row stays `downloading` and is resumed at the next start
            except _GONE as exc:
                if exc.status_code == 409 and attempts < _CONFLICT_RETRIES:
                    await self._retry_or_fail(job_id, index, attempts, exc)
                else:
                    await self._end(job_id, index, "gone", exc, attempts)
            except _FORBIDDEN as exc:
                log.error(
                    "download.forbidden", error=str(exc), hint="check OPENROUTER_API_KEY", attempts=attempts
                )
                await self._end(job_id, index, "failed", exc, attempts)
            except InsufficientStorageError as exc:
                await self._wait_for_space(
                    job_id, index, f"need {exc.needed} bytes, {exc.free} free above the floor"
                )
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # filled up by someone else meanwhile
                    free = await asyncio.to_thread(self._free_above_floor)
                    await self._wait_for_space(
                        job_id, index, f"the disk filled up ({exc.strerror}), {free} free above the floor"
                    )
                else:
                    await self._retry_or_fail(job_id, index, attempts, exc)
            except (OpenRouterVideoError, ValueError) as exc:
                await self._retry_or_fail(job_id, index, attempts, exc)
            except Exception as exc:  # a bug must not kill the fetcher; retry later, loudly
                log.exception("download.crashed", attempts=attempts)
                await self._retry_or_fail(job_id, index, attempts, exc)
            else:
                self._space_waits.pop((job_id, index), None)
                try:
                    recorded = await self.store.finish_download(
                        job_id, index, path=result.path, size=result.bytes, sha256=result.sha256
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

    def _free_above_floor(self) -> int:
        return max(0, shutil.disk_usage(self.settings.videos_dir).free - self.settings.min_free_bytes)

    async def _wait_for_space(self, job_id: str, index: int, detail: str) -> None:
        # A full disk is our problem, not the output's: it never uses up the attempts of a paid video.
        key = (job_id, index)
        waits = self._space_waits[key] = self._space_waits.get(key, 0) + 1
        delay = self.backoff.delay(min(waits - 1, _MAX_SPACE_WAIT_STEP))
        error = f"waiting for disk space: {detail}"
        self.metrics.inc("receiver_downloads_total", result="waiting_for_space")
        log.warning("download.waiting_for_space", error=error, waits=waits, retry_in=round(delay, 2))
        try:
            await self.store.retry_download(
                job_id, index, next_at=time.time() + delay, error=error, count_attempt=False
            )
        except StoreUnavailable as store_exc:
            log.error("download.unrecorded", error=str(store_exc))

    async def _retry_or_fail(self, job_id: str, index: int, attempts: int, exc: Exception) -> None:
        if attempts >= self.settings.download_max_attempts:
            await self._end(job_id, index, "failed", exc, attempts)
            return
        retry_after = getattr(exc, "retry_after", None)
        delay = self.backoff.delay(attempts - 1, retry_after)
        self.metrics.inc("receiver_downloads_total", result="retry")
        log.warning(
            "download.attempt", outcome="retry", error=str(exc), attempts=attempts, retry_in=round(delay, 2)
        )
        try:
            await self.store.retry_download(job_id, index, next_at=time.time() + delay, error=str(exc))
        except StoreUnavailable as store_exc:
            log.error("download.unrecorded", error=str(store_exc))

    async def _end(self, job_id: str, index: int, state: str, exc: Exception, attempts: int) -> None:
        self._space_waits.pop((job_id, index), None)
        self.metrics.inc("receiver_downloads_total", result=state)
        log.error("download.attempt", outcome=state, error=str(exc), attempts=attempts)
        try:
            await self.store.end_download(job_id, index, state=state, error=str(exc))
        except StoreUnavailable as store_exc:
            log.error("download.unrecorded", error=str(store_exc))
