"""Serving an output: the checks shared by both download routes, single Range requests, throttling.

Bytes come from `_mp4.iter_content`, so a response holds at most one chunk in memory; uvicorn's
flow control pauses the generator while the client is slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .._types import COMPLETED
from ._http import ApiError
from ._jobs import Job
from ._mp4 import CHUNK, etag, iter_content
from ._traffic import OutputTraffic


class RangeNotSatisfiable(Exception):
    pass


def parse_index(raw: str | None) -> int:
    """The `index` query parameter: default 0, a non-negative integer."""
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, f"index: {raw!r} must be a non-negative integer")
    return int(raw)


def check_downloadable(job: Job, index: int, gone: bool) -> None:
    """409 before completion, 400 for an index beyond the outputs, 410 when the output is gone."""
    status = job.status()
    if status != COMPLETED:
        detail = "is not ready yet" if status in ("pending", "in_progress") else "has no output"
        raise ApiError(409, f"Video generation job {job.id} {detail} (status: {status})")
    if index >= job.outputs:
        raise ApiError(
            400, f"index: {index} is out of range (job has {job.outputs} output(s): 0..{job.outputs - 1})"
        )
    if gone:
        raise ApiError(410, f"Output {index} of job {job.id} is no longer available")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`(start, stop)` for one satisfiable `bytes=` range; None to send the whole file.

    Malformed or multi-range headers are ignored (allowed by RFC 9110); a well-formed range that
    starts past the end raises `RangeNotSatisfiable`.
    """
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:].strip()
    if "," in spec:
        return None
    first, sep, last = (part.strip() for part in spec.partition("-"))
    if not sep or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()):
        return None
    if last and not last.isdigit():
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size
    start = int(first)
    stop = size if not last else min(size, int(last) + 1)
    if start >= size:
        raise RangeNotSatisfiable
    if stop <= start:
        return None
    return start, stop


async def _paced(
    job: Job,
    index: int,
    start: int,
    stop: int,
    rate: Callable[[], float | None],
    served: OutputTraffic | None = None,
) -> AsyncIterator[bytes | memoryview]:
    """Stream pieces, sleeping to keep under `rate()` bytes/s (re-read live) when set.

    `served` counts the body: started here, completed only once the last piece was handed over (a
    client that hangs up or dies first leaves it started, not completed)."""
    initial = rate()
    chunk = CHUNK if not initial else int(min(CHUNK, max(1024, initial / 20)))
    sent, began = 0, time.monotonic()
    key = served.start(job.id, index, job.bytes, partial=(start, stop) != (0, job.bytes)) if served else ""
    completed = False
    try:
        for piece in iter_content(job.id, index, job.bytes, start, stop, chunk=chunk, video=job.video):
            yield piece
            limit = rate()
            sent += len(piece)
            if served:
                served.sent(key, len(piece))
            wait = began + sent / limit - time.monotonic() if limit else 0.0
            # Always yield to the loop: a fast reader never pauses the transport, and other requests
            # (polls, webhooks, admin) must keep running during a multi-GB download.
            await asyncio.sleep(max(0.0, wait))
        completed = True
    finally:
        if served:
            served.finish(key, completed=completed)


def content_response(
    request: Request,
    job: Job,
    index: int,
    rate: Callable[[], float | None],
    served: OutputTraffic | None = None,
) -> Response:
    """200 (or 206 for a Range) with exact Content-Length; HEAD sends headers only (not counted)."""
    size = job.bytes
    tag = etag(job.id, index, size, job.video)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": tag,
        "Content-Disposition": f'inline; filename="{job.id}-{index}.mp4"',
    }
    if_range = request.headers.get("if-range")
    try:
        span = parse_range(request.headers.get("range"), size) if if_range in (None, tag) else None
    except RangeNotSatisfiable:
        raise ApiError(
            416, f"Range not satisfiable (size {size})", {"Content-Range": f"bytes */{size}"}
        ) from None
    start, stop = span or (0, size)
    status = 206 if span else 200
    if span:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["Content-Length"] = str(stop - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="video/mp4")
    stream = _paced(job, index, start, stop, rate, served)
    return StreamingResponse(stream, status_code=status, headers=headers, media_type="video/mp4")
