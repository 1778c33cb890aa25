"""Sends the outbox's notifications to apps: signed POSTs, retried on a growing schedule.

The notifier claims due notifications (worker id and lease, as the fetcher claims downloads) and
POSTs each: the job's record as the API presents it, with absolute content URLs, in a Standard
Webhooks envelope signed at send time (receiver/notify_signing.py). A 2xx is delivered; anything
else (a 3xx too: a redirect is never followed, the signature must not go elsewhere; a timeout, a
refused address) is a failed attempt, retried after the schedule's next delay
(`domain.notifications.next_attempt`) or, after the last, `dead` until replayed. The URL is checked
again before each send (DNS may have changed since the job named it).

It wakes when a notification is written (Wakeups `notifications`, on every replica for PostgreSQL),
at the next due time, and every IDLE_RECHECK seconds (a CLI replay on SQLite wakes no other
process). The state is the store's: a restart resumes, an expired claim is taken over.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import structlog

from .. import contract
from ..contract_notify import NotificationEnvelope, notification_data
from ..domain.notifications import NotificationRecord, next_attempt
from ..notify_signing import NoSecret, secret_for, signed_headers
from ..notify_url import RefusedUrl, check_notify_url, check_resolved, pinned
from ..settings import Settings
from ..storage.base import Stores, StoreUnavailable

log = structlog.get_logger("receiver.notifier")

IDLE_RECHECK = 2.0  # seconds; also how soon a replay made by another process is sent
CONCURRENCY = 8  # sends in flight per process
USER_AGENT = "openrouter-video-receiver (notifications)"


class Failed(Exception):
    """An attempt that did not deliver: the app's status (None: no answer) and why."""

    def __init__(self, status: int | None, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class Notifier:
    def __init__(
        self, stores: Stores, settings: Settings, *, client: httpx.AsyncClient | None = None
    ) -> None:
        self.stores = stores
        self.outbox = stores.notifications
        self.settings = settings
        # Never follows a redirect: the signed body must reach the URL the job named, or fail.
        self.client = client or httpx.AsyncClient(
            follow_redirects=False, timeout=settings.notify_timeout, headers={"User-Agent": USER_AGENT}
        )
        self._active: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()

    async def run(self) -> None:
        try:
            recovered = await self.outbox.recover()
            if recovered:
                log.info("notification.resumed", recovered=recovered)
        except StoreUnavailable as exc:
            log.error("notification.recover_failed", error=str(exc))
        try:
            while True:
                self._slot_freed.clear()
                free = CONCURRENCY - len(self._active)
                if free > 0:
                    try:
                        claimed = await self.outbox.claim(time.time(), free)
                    except StoreUnavailable as exc:
                        log.error("notification.claim_failed", error=str(exc))
                        claimed = []
                    for record in claimed:
                        task = asyncio.create_task(self._attempt(record))
                        self._active.add(task)
                        task.add_done_callback(self._done)
                    if len(claimed) == free:
                        continue  # maybe more due right now
                await self._sleep(await self._idle_timeout())
        finally:
            for task in self._active:
                task.cancel()  # the claims stay; their leases run out (or the next start recovers them)
            await asyncio.gather(*self._active, return_exceptions=True)
            await self.client.aclose()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self._slot_freed.set()

    async def _idle_timeout(self) -> float:
        try:
            due = await self.outbox.next_due()
        except StoreUnavailable:
            due = None
        if due is None:
            return IDLE_RECHECK
        return min(IDLE_RECHECK, max(0.01, due - time.time()))

    async def _sleep(self, timeout: float) -> None:
        woken = asyncio.ensure_future(self.stores.wakeups.wait("notifications", timeout))
        freed = asyncio.ensure_future(self._slot_freed.wait())
        try:
            await asyncio.wait((woken, freed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            freed.cancel()

    async def _attempt(self, record: NotificationRecord) -> None:
        fields = {"id": record.id, "job_id": record.job_id, "attempt": record.attempts}
        try:
            status = await self._send(record)
        except asyncio.CancelledError:
            raise
        except Failed as exc:
            await self._failed(record, exc.status, exc.error, fields)
            return
        except Exception as exc:  # a bug must not lose the notification: a failed attempt, loudly
            log.exception("notification.crashed", **fields)
            await self._failed(record, None, f"internal error: {type(exc).__name__}", fields)
            return
        try:
            recorded = await self.outbox.delivered(record.id, status=status)
        except StoreUnavailable as exc:
            log.error("notification.unrecorded", error=str(exc), **fields)  # sent again after the lease
            return
        log.info("notification.sent", status=status, recorded=recorded, **fields)

    async def _failed(
        self, record: NotificationRecord, status: int | None, error: str, fields: dict[str, object]
    ) -> None:
        delay = next_attempt(record.attempts, self.settings.notify_schedule, random.random())
        next_at = time.time() + delay if delay is not None else None
        try:
            await self.outbox.failed(record.id, status=status, error=error, next_at=next_at)
        except StoreUnavailable as exc:
            log.error("notification.unrecorded", error=str(exc), **fields)
            return
        later = {"retry_in": round(delay, 2)} if delay is not None else {"dead": True}
        log.warning("notification.failed", status=status, error=error, **later, **fields)

    async def _send(self, record: NotificationRecord) -> int:
        """POST it once; the app's 2xx status, else Failed (never the secret or the signature in it)."""
        allow = self.settings.notify_allow_private
        try:  # again at send time: the host's address may have changed since the job named it
            check_notify_url(record.url, allow_private=allow)
            address = await check_resolved(record.url, allow_private=allow)
        except RefusedUrl as exc:
            raise Failed(None, f"refused: {exc}") from None
        job = await self.stores.jobs.get(record.job_id)
        if job is None:
            raise Failed(None, "the job's record was deleted; nothing to tell")
        now = int(time.time())
        envelope = contract.shape(
            {
                "type": record.event,
                "timestamp": contract.iso(now),
                "data": notification_data(job, self.settings.public_url),
            },
            NotificationEnvelope,
        )
        body = contract.encode(envelope)
        try:
            key = await secret_for(self.settings, self.stores.tokens, record.owner)
        except NoSecret as exc:
            raise Failed(None, str(exc)) from None
        headers = {"Content-Type": "application/json", **signed_headers(key, record.id, now, body)}
        try:
            target, host, extensions = pinned(record.url, address)
            response = await self.client.post(
                target, content=body, headers={**headers, **host}, extensions=extensions
            )
        except httpx.HTTPError as exc:
            raise Failed(None, f"{type(exc).__name__}: {str(exc)[:200] or 'no answer'}") from None
        if 200 <= response.status_code < 300:
            return response.status_code
        if 300 <= response.status_code < 400:
            where = response.headers.get("location", "")[:200]
            raise Failed(response.status_code, f"redirect to {where!r} not followed (answer 2xx at the URL)")
        raise Failed(response.status_code, f"the app answered HTTP {response.status_code}")
