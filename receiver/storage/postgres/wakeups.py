"""Wakeups over LISTEN/NOTIFY: a worker sleeps until there may be work, here or on any replica.

The store sends `pg_notify('deliveries' | 'downloads')` in the very transaction that records a
delivery or queues outputs, so a notification arrives only once its work is committed and visible.
One dedicated connection (outside the pool: it must stay in LISTEN) receives them for this process and
sets an event per topic. If that connection drops, the workers still wake on their timeouts (the
fallback they always had); the listener reconnects with backoff and logs the outage once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

import psycopg
import structlog

Topic = Literal["deliveries", "downloads"]
TOPICS: tuple[Topic, ...] = ("deliveries", "downloads")

log = structlog.get_logger("receiver.storage.postgres")


class Wakeups:
    def __init__(self, url: str, *, max_backoff: float = 10.0) -> None:
        self._url = url
        self._max_backoff = max_backoff
        self._events: dict[str, asyncio.Event] = {topic: asyncio.Event() for topic in TOPICS}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while LISTEN is in place (tests wait for it)
        self.received = 0  # notifications received from the server

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="pg-listen")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def notify(self, topic: Topic) -> None:
        """Wake this process's workers of `topic` (other replicas learn it from the store's NOTIFY)."""
        self._events[topic].set()

    async def wait(self, topic: Topic, timeout: float) -> bool:
        event = self._events[topic]
        if not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                return False
        event.clear()
        return True

    async def _listen(self) -> None:
        failures = 0
        while True:
            error = "the server closed the connection"
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5
                ) as conn:
                    for topic in TOPICS:
                        await conn.execute(f"LISTEN {topic}")  # our own names
                    if failures:
                        log.info("wakeups.listening_again", after_failures=failures)
                    failures = 0
                    self.listening.set()
                    for topic in TOPICS:  # anything sent while nobody here listened
                        self._events[topic].set()
                    async for note in conn.notifies():
                        self.received += 1
                        if note.channel in self._events:
                            self._events[note.channel].set()
            except psycopg.Error as exc:
                error = str(exc).strip()[:200]
            self.listening.clear()
            if failures == 0:
                log.warning(
                    "wakeups.listen_lost",
                    error=error,
                    hint="workers wake on their timeouts until it is back; reconnecting",
                )
            failures += 1
            await asyncio.sleep(min(self._max_backoff, 0.1 * 2 ** min(failures, 10)))
