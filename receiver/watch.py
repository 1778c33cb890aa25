"""One watcher per process for every wait on jobs: long-polls (GET /jobs/{id}?wait=) and event streams
(GET /events).

However many requests wait, the store's change feed (`Dashboard.changes_since`) is read by one task:
once per wake-up, and the ids of the jobs it names are fanned out to their waiters (an asyncio.Event
each). 500 open long-polls cost one feed read per change, and a re-read of the one job that changed,
never a poll per waiter. The watcher wakes on the store's `jobs` wakeup, which every write that moves
a job's status or an output's state sends after its commit (PostgreSQL: on every replica, through
LISTEN/NOTIFY), and looks anyway every LOOK_EVERY seconds (a change made by `openrouter-video
reprocess` in another process, or a NOTIFY lost while the LISTEN connection was down).

The watcher runs while someone waits, and LINGER seconds after (a client's next long-poll usually
follows at once). A waiter registers before it reads its job and is let in only once the watcher
stands at a position of the feed, so a change committed after that read is reported to it. (On
PostgreSQL, one committed out of order across the watcher's very first look can be missed: that
long-poll then answers at its timeout, with the record as it is.)

`end_waits()` wakes every waiter and ends every stream of this process: the server is shutting down
(uvicorn would otherwise wait for them until its graceful timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator

import structlog

from .domain.model import Changes, ChangeToken
from .storage.base import Stores

log = structlog.get_logger("receiver.watch")

LOOK_EVERY = 1.0  # seconds between looks when no wakeup came
LINGER = 30.0  # seconds the watcher keeps its place in the feed after the last waiter left
RETRY_AFTER_ERROR = 1.0
MAX_STREAMS = 64  # open GET /events streams per process (each reads the feed itself: it resumes)

_watches: weakref.WeakSet[JobWatch] = weakref.WeakSet()


def end_waits() -> None:
    """Answer every long-poll and end every event stream of this process (the server is stopping)."""
    for watch in list(_watches):
        watch.close()


class JobWatch:
    def __init__(
        self,
        stores: Stores,
        *,
        look_every: float = LOOK_EVERY,
        linger: float = LINGER,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self._stores = stores
        self.look_every = look_every
        self.linger = linger
        self.max_streams = max_streams
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._streams: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # set while the watcher stands at a position of the feed
        self.closed = False
        self.looks = 0  # feed reads so far (the cost does not grow with the number of waiters)
        _watches.add(self)

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def streams_full(self) -> bool:
        return self.closed or len(self._streams) >= self.max_streams

    @contextlib.asynccontextmanager
    async def watching(self, job_id: str, *, timeout: float) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `job_id` may have changed (and when the watch closes). Entered once
        the watcher stands in the feed, or after `timeout` if the store cannot be read meanwhile."""
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            await self._started(timeout)
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    @contextlib.asynccontextmanager
    async def streaming(self, *, timeout: float) -> AsyncIterator[asyncio.Event]:
        """An event set whenever any job changed (and when the watch closes), for one event stream."""
        event = asyncio.Event()
        self._streams.add(event)
        try:
            await self._started(timeout)
            yield event
        finally:
            self._streams.discard(event)

    def close(self) -> None:
        self.closed = True
        for event in self._every_event():
            event.set()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _started(self, timeout: float) -> None:
        if self.closed:
            return
        if self._task is None or self._task.done():
            self._ready.clear()
            self._task = asyncio.create_task(self._watch(), name="job-watch")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)

    def _every_event(self) -> list[asyncio.Event]:
        return [*(e for events in self._waiters.values() for e in events), *self._streams]

    def _fan_out(self, changes: Changes) -> None:
        if changes.all:  # more changed than listed (never with limit=None; kept for safety)
            woken = self._every_event()
        else:
            woken = [e for job_id in changes.jobs for e in self._waiters.get(job_id, ())]
            if changes.jobs:
                woken += self._streams
        for event in woken:
            event.set()

    async def _watch(self) -> None:
        token: ChangeToken | None = None  # the first look only finds where the feed stands
        idle_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                changes = await self._stores.dashboard.changes_since(token, limit=None)
            except Exception as exc:  # a store error must not end the waits; they time out meanwhile
                log.warning("watch.look_failed", error=str(exc) or type(exc).__name__)
                if not (self._waiters or self._streams):
                    self._ready.clear()
                    return  # nobody waits: the next waiter starts afresh
                await asyncio.sleep(RETRY_AFTER_ERROR)
                continue
            self.looks += 1
            if token is not None:
                self._fan_out(changes)
            token = changes.token
            self._ready.set()
            if changes.jobs:
                continue  # a look reads a bounded number of events: read on until nothing is new
            if self._waiters or self._streams:
                idle_since = None
            else:
                idle_since = idle_since if idle_since is not None else loop.time()
                if loop.time() - idle_since >= self.linger:
                    self._ready.clear()
                    return
            await self._stores.wakeups.wait("jobs", self.look_every)
