"""Serving a video from S3 over HTTP: Range, HEAD, 416, or a redirect to a presigned URL.

`object_response` answers from a HeadObject (size, ETag, date) already made, like a file server:
200 with the whole object, 206 for one satisfiable `bytes=` range (first bytes, middle, suffix),
416 with `Content-Range: bytes */size` for one that starts past the end; malformed and
multi-range headers are ignored (the whole object, as RFC 9110 allows). `If-Range` is honoured
against the ETag or Last-Modified. The body is a GetObject streamed in 64 KiB pieces (never the
whole object in memory), opened only when the response is sent, and not at all for HEAD; it asks
for the ETag the headers announced (If-Match), so a video replaced in between is not mixed in.

`redirect_response` answers 307 to a presigned GET URL valid for `ttl` seconds: the client then
reads S3 directly. The URL carries a signature and the access key id, never the secret key.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import error_response
from .s3_upload import describe, http_status

CHUNK = 64 * 1024


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`(start, stop)` of one satisfiable `bytes=` range; None for the whole object (no header, a
    malformed one, several ranges); RangeNotSatisfiable for one past the end."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:].strip()
    if "," in spec:
        return None
    first, sep, last = (part.strip() for part in spec.partition("-"))
    if not sep or (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
        return None
    if not first:  # a suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable
    stop = size if not last else min(size, int(last) + 1)
    if stop <= start:
        return None  # last < first: not a valid range, ignored
    return start, stop


def content_disposition(filename: str) -> str:
    quoted = quote(filename)
    if quoted == filename:
        return f'inline; filename="{filename}"'
    return f"inline; filename*=utf-8''{quoted}"


def object_response(
    client: Any, bucket: str, name: str, head: Mapping[str, Any], headers: Mapping[str, str], filename: str
) -> Response:
    size = int(head["ContentLength"])
    etag = head.get("ETag")
    modified = head.get("LastModified")
    answer = {"Accept-Ranges": "bytes", "Content-Disposition": content_disposition(filename)}
    if etag:
        answer["ETag"] = str(etag)
    if isinstance(modified, datetime):
        answer["Last-Modified"] = format_datetime(modified.astimezone(timezone.utc), usegmt=True)
    if_range = headers.get("if-range")
    honour = if_range is None or if_range in (answer.get("ETag"), answer.get("Last-Modified"))
    try:
        span = parse_range(headers.get("range"), size) if honour else None
    except RangeNotSatisfiable:
        return error_response(
            416,
            f"range not satisfiable (size {size})",
            headers={**answer, "Content-Range": f"bytes */{size}"},
        )
    start, stop = span or (0, size)
    if span:
        answer["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    answer["Content-Length"] = str(stop - start)
    return S3ObjectResponse(client, bucket, name, start, stop, etag, 206 if span else 200, answer)


class S3ObjectResponse(StreamingResponse):
    """Streams bytes `start`..`stop` of an object; GetObject is sent only when the response is."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        name: str,
        start: int,
        stop: int,
        etag: str | None,
        status_code: int,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(_nothing(), status_code=status_code, headers=headers, media_type="video/mp4")
        self._get = {"Bucket": bucket, "Key": name, "Range": f"bytes={start}-{stop - 1}"}
        if etag:
            self._get["IfMatch"] = etag
        self._client = client
        self._empty = stop <= start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "HEAD" or self._empty:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            answer = await self._client.get_object(**self._get)
        except Exception as exc:  # replaced or deleted since the HEAD, or S3 unreachable
            gone = http_status(exc) in (404, 412)
            status, message = (503, "the video changed while being served; retry") if gone else (502, "")
            await error_response(status, message or describe(exc, "GetObject"))(scope, receive, send)
            return
        body = answer["Body"]
        self.body_iterator = _pieces(body)
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _close(body)  # also when the client went away mid-stream


async def _nothing() -> Any:
    return
    yield


async def _pieces(body: Any) -> Any:
    async for piece in body.iter_chunks(CHUNK):
        yield piece


async def _close(body: Any) -> None:
    closing = getattr(body, "aclose", None) or body.close
    result = closing()
    if inspect.isawaitable(result):
        await result


async def redirect_response(client: Any, bucket: str, name: str, filename: str, ttl: int) -> Response:
    url = await client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": name,
            "ResponseContentDisposition": content_disposition(filename),
            "ResponseContentType": "video/mp4",
        },
        ExpiresIn=ttl,
    )
    # no-store: the URL expires; a cached redirect would send the client to a dead link.
    return Response(status_code=307, headers={"Location": str(url), "Cache-Control": "no-store"})
