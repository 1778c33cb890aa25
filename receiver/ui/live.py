"""Live updates for open dashboard pages: Server-Sent Events fed by one watcher per process.

The watcher looks at the store's change feed (`Dashboard.changes_since`: a primary-key lookup or two
while nothing changed) once a second, so a change made by any replica sharing the store reaches every
open page within about a second; and this process's applier wakes it at once when it applies a
delivery, so a webhook received here shows without that second. Each change is sent to every open stream as the ids of the jobs it touched.
The watcher runs only while a stream is open: the cost is one small query a second per process,
whatever the number of pages.

Streams are bounded (MAX_STREAMS per process: the next one gets 503 and the browser retries), each
sends a comment every PING_SECONDS (proxies close idle connections, and a write is how a closed one
is noticed), and `end_streams()` ends them all when the server shuts down (uvicorn would otherwise
wait for them until its graceful timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator

import structlog

from ..domain.model import ChangeToken
from ..state import ReceiverState
from . import data

log = structlog.get_logger("receiver.ui")

MAX_STREAMS = 64
LOOK_EVERY = 1.0
PING_SECONDS = 15.0
RETRY_MS = 2000  # how long a browser waits before reconnecting a closed stream
_QUEUE = 16  # changes buffered per stream; a stream that falls behind is told to reload instead

_hubs: weakref.WeakSet[LiveHub] = weakref.WeakSet()


def end_streams() -> None:
    """End every open live stream in this process (the server is shutting down)."""
    for hub in list(_hubs):
        hub.close()


class _Closed:
    pass


_CLOSED = _Closed()


class LiveHub:
    def __init__(self, max_streams: int = MAX_STREAMS, look_every: float = LOOK_EVERY) -> None:
        self.max_streams = max_streams
        self.look_every = look_every
        self._queues: set[asyncio.Queue[dict[str, object] | _Closed]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        _hubs.add(self)

    @property
    def open_streams(self) -> int:
        return len(self._queues)

    def full(self) -> bool:
        return self._closed or len(self._queues) >= self.max_streams

    def close(self) -> None:
        self._closed = True
        for queue in list(self._queues):
            self._put(queue, _CLOSED, force=True)
        if self._watcher is not None:
            self._watcher.cancel()

    async def stream(self, state: ReceiverState, *, until: float | None = None) -> AsyncIterator[bytes]:
        """One page's event stream: `change` events ({"jobs": [...], "all": bool, "deliveries": bool})
        and pings; it ends at `until` (when the session that opened it expires) or when closed."""
        queue: asyncio.Queue[dict[str, object] | _Closed] = asyncio.Queue(_QUEUE)
        self._queues.add(queue)
        self._start(state)
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
            while not self._closed and (until is None or time.time() < until):
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=PING_SECONDS)
                except asyncio.TimeoutError:
                    yield b": ping\n\n"
                    continue
                if isinstance(item, _Closed):
                    return
                yield f"event: change\ndata: {json.dumps(item, separators=(',', ':'))}\n\n".encode()
        finally:
            self._queues.discard(queue)
            if not self._queues and self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None

    def _start(self, state: ReceiverState) -> None:
        if self._watcher is None or self._watcher.done():
            self._wake = asyncio.Event()
            self._watcher = asyncio.create_task(self._watch(state, self._wake), name="ui-live")

    def _put(
        self, queue: asyncio.Queue[dict[str, object] | _Closed], item: object, force: bool = False
    ) -> None:
        try:
            queue.put_nowait(item)  # type: ignore[arg-type]
        except asyncio.QueueFull:
            if not force:
                # Behind by a full queue: drop what it has and tell the page to reload what it shows.
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        queue.get_nowait()
                queue.put_nowait({"jobs": [], "all": True})
            else:
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(item)  # type: ignore[arg-type]

    async def _watch(self, state: ReceiverState, wake: asyncio.Event) -> None:
        stop_listening = data.on_applied(state, wake.set)
        token: ChangeToken | None = None  # the first look only finds where the feed stands
        try:
            while True:
                try:
                    looked, change = await data.changes(state, token)
                except Exception:  # a store error must not end the pages' streams; try again next time
                    log.exception("ui.live_failed")
                else:
                    if token is not None and (change["jobs"] or change["all"] or change["deliveries"]):
                        for queue in list(self._queues):
                            self._put(queue, change)
                    token = looked
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=self.look_every)
                wake.clear()
        finally:
            stop_listening()
