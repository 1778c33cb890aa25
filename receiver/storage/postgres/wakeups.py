"""Wakeups over LISTEN/NOTIFY: a worker sleeps until there may be work, here or on any replica.

A notification is sent only once its work is committed, so the woken worker finds it:

- outputs queued: `pg_notify('downloads')` inside the applier's transaction (a batch, not per event);
- a delivery recorded: `announce('deliveries')` after its commit, coalesced (at most one NOTIFY in
  flight; the deliveries acknowledged meanwhile share the next one). Not inside the delivery's own
  transaction: a transaction that notifies takes a database-wide lock until its commit is flushed,
  which serialized every acknowledgement. Measured with 32 concurrent recorders, fsync on, on a
  shared 2-core machine (noisy): 1,170-1,320 acks/s with the NOTIFY inside against 2,130-2,940/s
  without; coalesced after the commit (one NOTIFY per ~25 acks) within the noise of none.
- a job's status or outputs changed: `pg_notify('jobs')` inside an applier's transaction (a batch),
  `jobs_changed()` after the other writes' commits (this process at once, the others by a coalesced
  `announce('jobs')`): what wakes the long-polls and event streams everywhere.
- a notification written to the outbox, or sent back to pending: `pg_notify('notifications')` inside
  that transaction (rare: once per job end), so any replica's notifier sends it at once.

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

from ..base import StoreUnavailable
from ._db import Conn, Database

Topic = Literal["deliveries", "downloads", "jobs", "notifications"]
TOPICS: tuple[Topic, ...] = ("deliveries", "downloads", "jobs", "notifications")

log = structlog.get_logger("receiver.storage.postgres")


class Wakeups:
    def __init__(self, url: str, db: Database, *, max_backoff: float = 10.0) -> None:
        self._url = url
        self._db = db
        self._wanted: set[str] = set()
        self._sender: asyncio.Task[None] | None = None
        self.sent = 0  # NOTIFYs sent by `announce`
        self._max_backoff = max_backoff
        self._events: dict[str, asyncio.Event] = {topic: asyncio.Event() for topic in TOPICS}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while LISTEN is in place (tests wait for it)
        self.received = 0  # notifications received from the server

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="pg-listen")

    async def close(self) -> None:
        for task in (self._task, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sender = None

    def announce(self, topic: Topic) -> None:
        """Tell every replica (this one included) that `topic` work was committed: soon, coalesced."""
        self._wanted.add(topic)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="pg-notify")

    async def _send(self) -> None:
        while self._wanted:
            topics, self._wanted = sorted(self._wanted), set()

            async def notify(conn: Conn, topics: list[str] = topics) -> None:
                await conn.execute("SELECT pg_notify(topic, '') FROM unnest(%s::text[]) AS topic", (topics,))

            try:
                await self._db.run(notify)
                self.sent += 1
            except StoreUnavailable:
                return  # a hint only: the workers' timeouts cover it

    def jobs_changed(self) -> None:
        """A job's status or outputs changed (committed): wake the waits here now, and on the other replicas."""
        self.notify("jobs")
        self.announce("jobs")

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
