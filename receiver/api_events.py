"""GET /events: every change of a job's status or outputs, as Server-Sent Events, resumable.

The stream starts with `ready` (its id: where the feed stands), then sends one `job` event per job
that changed (`contract.JobChange`: id, status, the outputs' states and content URLs). A change of
several jobs at once is sent as consecutive events and only the last carries an `id:`, so a client
that reconnects with `Last-Event-ID` (or `?since=`) gets every change it has not seen, at least once,
however long it was away: job events are kept as long as their jobs. A cursor that cannot be followed
(another or a restored store, or more than MAX_BEHIND job events behind) gets a `reset` event: read
again the jobs you follow; the stream goes on from now.

An app's token (role read or submit) gets its own jobs' changes only; an admin's, every job's.
Each stream reads the change feed itself, from its own cursor, when receiver/watch.py's watcher says
something changed; streams are capped per process (MAX_STREAMS: the next is a 503 with Retry-After).
A comment every PING_SECONDS keeps proxies from closing an idle stream (and notices a closed one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from . import contract
from .auth import principal_of
from .domain.model import ChangeToken
from .domain.tokens import Principal
from .domain.waiting import decode_cursor, encode_cursor
from .errors import error_response
from .state import ReceiverState, state_of

PING_SECONDS = 15.0
RETRY_MS = 2000  # how long an EventSource waits before reconnecting
MAX_BEHIND = 100_000  # job events a resumed stream replays at most; further behind: `reset`
START_TIMEOUT = 10.0  # how long a new stream waits for the watcher to stand in the feed


async def stream_events(request: Request) -> Response:
    s = state_of(request)
    given = request.headers.get("last-event-id") or request.query_params.get("since") or None
    token: ChangeToken | None = None
    if given is not None:
        try:
            token, _issued = decode_cursor(given)
        except ValueError as exc:
            return error_response(400, str(exc))
    if s.watch.streams_full():
        return error_response(
            503,
            f"too many event streams open here ({s.watch.max_streams}); retry later",
            headers={"Retry-After": "2"},
        )
    return StreamingResponse(
        _events(s, token, principal_of(request)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},  # nginx: do not buffer it
    )


async def _events(s: ReceiverState, token: ChangeToken | None, principal: Principal) -> AsyncIterator[bytes]:
    watch, stores = s.watch, s.stores
    async with watch.streaming(timeout=START_TIMEOUT) as woken:
        yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
        here = (await stores.dashboard.changes_since(None)).token
        if token is not None and (reason := _cannot_follow(token, here)) is not None:
            yield _event("reset", contract.EventsReset(reason), here)
            token = None
        if token is None:
            token = here
            yield _event("ready", {}, here)
        while not watch.closed:
            woken.clear()  # before the read: a change committed during it sets the event again
            changes = await stores.dashboard.changes_since(token, limit=None)
            records = [await stores.jobs.get(job_id) for job_id in changes.jobs]
            # a job deleted since has nothing to show; an app sees its own jobs' changes only
            shown = [r for r in records if r is not None and principal.sees(r.owner)]
            for n, record in enumerate(shown, 1):
                last = n == len(shown)
                yield _event("job", contract.present_change(record), changes.token if last else None)
            token = changes.token
            if changes.jobs:
                continue  # a look reads a bounded number of events: read on until nothing is new
            if not await _woken_within(woken, PING_SECONDS):
                yield b": ping\n\n"


def _cannot_follow(token: ChangeToken, here: ChangeToken) -> str | None:
    if token.events > here.events:
        return "the cursor is ahead of this receiver's job events (another or a restored store)"
    if here.events - token.events > MAX_BEHIND:
        return f"the cursor is more than {MAX_BEHIND} job events behind"
    return None


def _event(name: str, data: object, token: ChangeToken | None) -> bytes:
    lines = [] if token is None else [f"id: {encode_cursor(token, time.time())}"]
    lines += [f"event: {name}", f"data: {contract.encode(data).decode()}"]
    return ("\n".join(lines) + "\n\n").encode()


async def _woken_within(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True
