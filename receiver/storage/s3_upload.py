"""One video into S3 as it downloads: `S3Upload`, the `AsyncDownloadTarget` of the S3 content store.

The client's download calls `start`, `write` (about 1 MiB at a time, in order), then `commit`
once every check passed, or `abort`. The bytes go into a multipart upload, part by part:

- A part is sent as soon as `part_size` bytes (8 MiB by default; larger when the announced size
  would need more than S3's 10,000 parts) are buffered; at most `in_flight` parts are being sent
  at once, and `write` waits for one of them when that many are: the memory held is about
  (in_flight + 1) x part_size whatever the video's size. All parts but the last have the same
  size (some S3-compatible stores require it).
- The upload is created only when the first part is full: a video smaller than one part is sent
  by `commit` as one PutObject, and a download refused early (not a video) costs no request.
- CompleteMultipartUpload is sent only by `commit`: until then no object exists under the key, so
  a half-written video can never be served. `abort` (or a failed commit) sends
  AbortMultipartUpload; an upload whose process died is left to `S3ContentStore.sweep_partials`.

Errors: a failed S3 request raises `S3Unavailable` (a `StoreUnavailable`) with one line naming
the operation and S3's error code, never a credential; the download then aborts the upload.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import structlog

from .base import StoreUnavailable

log = structlog.get_logger("receiver.storage.s3")

MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
MAX_PARTS = 10_000


class S3Unavailable(StoreUnavailable):
    """An S3 request failed (endpoint down, access denied, no bucket...): one line, no credentials."""


def describe(exc: BaseException, operation: str) -> str:
    """One line about a failed S3 call: the operation, S3's code and status, never a credential or
    a signature (botocore's messages can quote the string to sign)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = error.get("Code") or "error"
        return f"{operation} failed: {code} (HTTP {status})"
    name = type(exc).__name__
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"):
        return f"{operation} failed: cannot connect to the S3 endpoint ({name})"
    if name == "NoCredentialsError":
        return f"{operation} failed: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    return f"{operation} failed: {name}"


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        return str(code) if code is not None else None
    return None


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


class S3Upload:
    """Streams one object into a multipart upload; see the module docstring."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        name: str,
        *,
        part_size: int = 8 * MiB,
        in_flight: int = 2,
        content_type: str = "video/mp4",
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"part_size must be at least {MIN_PART} bytes (S3's smallest part)")
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self.client = client
        self.bucket = bucket
        self.name = name
        self.part_size = part_size
        self.in_flight = in_flight
        self.content_type = content_type
        self.location = f"s3://{bucket}/{name}"
        self.upload_id: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.upload_id = None
        self._part = self.part_size
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._number = 0
        self._sent = 0  # bytes handed to part uploads
        self._etags: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, expected: int | None, content_type: str | None) -> None:
        await self.abort()  # whatever an earlier attempt left
        if expected is not None and expected > self.part_size * MAX_PARTS:
            # Grow the parts (in whole MiB) so the announced size fits in S3's 10,000.
            self._part = -(-expected // (MAX_PARTS * MiB)) * MiB

    async def write(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            if chunk:
                self._buffer.append(chunk)
                self._buffered += len(chunk)
        while self._buffered >= self._part:
            await self._send(self._take(self._part))

    def _take(self, n: int) -> bytes:
        """The first `n` buffered bytes, as one bytes object (one copy)."""
        pieces: list[bytes] = []
        need = n
        while need:
            chunk = self._buffer[0]
            if len(chunk) <= need:
                pieces.append(self._buffer.popleft())
                need -= len(chunk)
            else:
                pieces.append(chunk[:need])
                self._buffer[0] = chunk[need:]
                need = 0
        self._buffered -= n
        return b"".join(pieces)

    async def _send(self, data: bytes) -> None:
        if self.upload_id is None:
            try:
                answer = await self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.name, ContentType=self.content_type
                )
            except Exception as exc:
                raise S3Unavailable(describe(exc, "CreateMultipartUpload")) from None
            self.upload_id = str(answer["UploadId"])
        while len(self._tasks) >= self.in_flight:  # bounded memory: wait for a part to finish
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._tasks.discard(task)
                task.result()  # a failed part fails the upload now
        self._number += 1
        if self._number > MAX_PARTS:
            raise S3Unavailable(f"UploadPart failed: more than {MAX_PARTS} parts of {self._part} bytes")
        self._sent += len(data)
        self._tasks.add(asyncio.ensure_future(self._upload_part(self._number, data)))

    async def _upload_part(self, number: int, data: bytes) -> None:
        try:
            answer = await self.client.upload_part(
                Bucket=self.bucket, Key=self.name, UploadId=self.upload_id, PartNumber=number, Body=data
            )
        except Exception as exc:
            raise S3Unavailable(describe(exc, f"UploadPart {number}")) from None
        self._etags[number] = str(answer["ETag"])

    async def commit(self, size: int, sha256: str) -> str:
        if self.upload_id is None:  # smaller than one part: a single PutObject
            data = self._take(self._buffered)
            if len(data) != size:
                raise S3Unavailable(f"PutObject refused: {len(data)} bytes buffered, {size} expected")
            try:
                await self.client.put_object(
                    Bucket=self.bucket, Key=self.name, Body=data, ContentType=self.content_type
                )
            except Exception as exc:
                raise S3Unavailable(describe(exc, "PutObject")) from None
            return self.location
        if self._buffered:
            await self._send(self._take(self._buffered))
        await asyncio.gather(*self._tasks)  # the first failed part raises (abort cancels the rest)
        self._tasks.clear()
        if self._sent != size or len(self._etags) != self._number:
            raise S3Unavailable(f"CompleteMultipartUpload refused: {self._sent} bytes sent, {size} expected")
        parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in range(1, self._number + 1)]
        try:
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.name, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
            )
        except Exception as exc:
            raise S3Unavailable(describe(exc, "CompleteMultipartUpload")) from None
        self.upload_id = None  # completed: nothing left to abort
        return self.location

    async def abort(self) -> None:
        """Stop the parts in flight and abort the upload; never raises (a failed abort leaves the
        upload to `sweep_partials`, and the failure being handled matters more)."""
        tasks, upload_id = list(self._tasks), self.upload_id
        self._reset()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if upload_id is None:
            return
        try:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.name, UploadId=upload_id)
        except Exception as exc:
            if error_code(exc) != "NoSuchUpload":
                log.warning("s3.abort_failed", key=self.name, error=describe(exc, "AbortMultipartUpload"))
