"""GET /jobs/{id}?wait=SECONDS: the job record as soon as its status or an output's state changes.

Without `wait`, the plain record (api.get_job). With it, the request is held until the job changes or
`wait` seconds pass, then answered with the record as it is then; `Wait-Result` says which:

- `changed`: the status or an output's state differs from when the request arrived;
- `settled`: the job can change no more (terminal, every output downloaded or given up): at once;
- `timeout`: nothing changed within `wait` seconds;
- `closing`: the receiver is shutting down (ask again: another replica, or this one restarted).

The waiting is receiver/watch.py's: one watcher per process reads the change feed and wakes only the
waiters of the jobs that changed; each woken waiter reads its one job again. A client that hangs up
is noticed at once and its waiter removed.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import Response

from openrouter_video import is_valid_job_id

from . import api
from .auth import principal_of
from .domain.model import JobRecord
from .domain.waiting import parse_wait, settled, version
from .errors import error_response
from .state import ReceiverState, state_of

WAIT_RESULT = "Wait-Result"


async def get_job(request: Request) -> Response:
    raw = request.query_params.get("wait")
    if raw is None:
        return await api.get_job(request)
    try:
        seconds = parse_wait(raw)
    except ValueError as exc:
        return error_response(400, str(exc))
    job_id = request.path_params["job_id"]
    if not is_valid_job_id(job_id):
        return error_response(404, f"no job {job_id[:100]!r}")
    s = state_of(request)
    watch = s.watch
    deadline = asyncio.get_running_loop().time() + seconds
    # Registered before the first read: a change committed after it wakes this waiter.
    async with watch.watching(job_id, timeout=seconds) as woken:
        record = await api.find_job(s, job_id, principal_of(request))  # another app's: 404
        if record is None:
            return error_response(404, f"no job {job_id[:100]!r}")
        if settled(record):
            return api.job_response(record, {WAIT_RESULT: "settled"})
        hung_up = asyncio.create_task(_until_disconnected(request))
        try:
            result, record = await _wait(s, job_id, record, woken, hung_up, deadline)
        finally:
            hung_up.cancel()
    if record is None:
        return error_response(404, f"job {job_id[:100]!r} was deleted while waited on")
    if result == "gone":
        return Response(status_code=499)  # nobody reads it: the client hung up
    return api.job_response(record, {WAIT_RESULT: result})


async def _wait(
    state: ReceiverState,
    job_id: str,
    record: JobRecord,
    woken: asyncio.Event,
    hung_up: asyncio.Task[None],
    deadline: float,
) -> tuple[str, JobRecord | None]:
    """(why it ends, the record then): changed, timeout, closing or gone (the client hung up)."""
    seen = version(record)
    loop = asyncio.get_running_loop()
    fresh: JobRecord | None = record
    while not state.watch.closed:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return "timeout", await state.stores.jobs.get(job_id)
        waiting = asyncio.ensure_future(woken.wait())
        done, _pending = await asyncio.wait(
            {waiting, hung_up}, timeout=remaining, return_when="FIRST_COMPLETED"
        )
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        if hung_up in done:
            return "gone", fresh
        if not woken.is_set():
            continue  # the deadline: answered at the top of the loop
        woken.clear()  # before the read: a change committed during it sets the event again
        fresh = await state.stores.jobs.get(job_id)
        if fresh is None or version(fresh) != seen:
            return "changed", fresh
    return "closing", await state.stores.jobs.get(job_id)


async def _until_disconnected(request: Request) -> None:
    """Returns when the client hangs up (the body of a GET is empty: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
