"""Writing a download to disk: the content checks, free space above the floor, hashing, atomic commit,
and resuming an interrupted download.

Moved out of `_base` as it grew; the sync and async clients feed it the same way:

1. `resume_point(dest, job_id)`: how many bytes of `<dest>.part` an earlier, interrupted download
   of the same job kept (a `<dest>.part.json` beside it says whose they are), and its ETag.
2. `range_headers(offset, etag)` go on the request; `content_span(response, offset)` says where the
   answer starts: at `offset` for a 206 whose Content-Range matches, at 0 for a 200 (the server
   ignored the Range: a full download), None for an answer that cannot be used.
3. `DownloadSink(..., start=...)` keeps the first `start` bytes of the part (re-hashing them, so
   the sha256 covers the whole file) and appends; `commit()` checks the final size and renames.
   `abort()` keeps the part for a later resume unless its content was found wrong.

A writable binary stream instead of a path (`-o -`) is written straight through: no part file,
no resume, no rename.

An `AsyncDownloadTarget` (`_target`) instead of a path goes through `TargetSink`: the same checks,
no part file and no resume (a retry starts it over from byte 0), commit only once they all passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
from typing import BinaryIO

import httpx

from ._exceptions import DownloadError, InsufficientStorageError
from ._mp4check import Mp4Walker
from ._storage import check_room
from ._target import AsyncDownloadTarget
from ._types import DownloadResult

CHUNK_SIZE = 1024 * 1024


_VIDEO_MAGIC_OFFSET4 = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
# Bytes the content check looks at: the first box header and the major brand of an MP4.
_SNIFF = 12


def looks_like_video(content_type: str | None, first_bytes: bytes) -> bool:
    """A video content type, or (for missing/generic types) MP4/WebM magic in the first bytes."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith("video/"):
        return True
    if kind in ("", "application/octet-stream", "binary/octet-stream"):
        return first_bytes[4:8] in _VIDEO_MAGIC_OFFSET4 or first_bytes[:4] == b"\x1a\x45\xdf\xa3"
    return False


class DownloadSink:
    """Writes a stream to `<dest>.part`, hashing as it goes; `commit()` fsyncs and renames it into place.

    `write_batch` is meant to run in a worker thread while the caller receives the next batch:
    file writes and sha256 both release the GIL, so receiving and writing overlap on two cores.
    With `start`, the first `start` bytes of an existing part are kept (and re-hashed) and the
    stream is appended to them; `expected` is then the size of the whole file. With `stream`, the
    bytes go to that binary stream instead (`dest` is only a label).
    """

    def __init__(
        self,
        dest: str,
        job_id: str,
        expected: int | None,
        content_type: str | None,
        keep_free: int | None = None,
        *,
        start: int = 0,
        etag: str | None = None,
        stream: BinaryIO | None = None,
    ) -> None:
        self.dest = dest
        self.part = dest + ".part"
        self.job_id = job_id
        self.expected = expected
        self.content_type = content_type
        self.keep_free = keep_free
        self.stream = stream
        self.written = 0
        self.hash = hashlib.sha256()
        self._checked = False
        self._bad = False  # the content itself was found wrong: the part is not worth keeping
        self._head = b""
        self._mp4 = Mp4Walker()  # the box structure, checked as the bytes pass (no re-read at the end)
        self._parent = os.path.dirname(os.path.abspath(dest))
        if stream is not None:
            self._fh: BinaryIO = stream
            return
        if keep_free is not None and expected is not None:
            # Refuse before the first byte: a download that cannot fit would only fill the disk.
            check_room(self._parent, expected - start, keep_free, job_id=job_id)
        if start > 0:
            self._fh = open(self.part, "r+b", buffering=0)  # noqa: SIM115 - closed in commit()/abort()
            self._fh.truncate(start)
            self._rehash(start)
        else:
            self._fh = open(self.part, "wb", buffering=0)  # noqa: SIM115 - closed in commit()/abort()
        with open(self.part + ".json", "w") as meta:
            json.dump({"job_id": job_id, "size": expected, "etag": etag}, meta)

    def _rehash(self, start: int) -> None:
        """Hash (and sniff) the kept prefix, so the sha256 and the content check cover the whole file."""
        self._fh.seek(0)
        while self.written < start:
            chunk = self._fh.read(min(CHUNK_SIZE, start - self.written))
            if not chunk:
                break
            if not self._checked:
                self._head += chunk[: _SNIFF - len(self._head)]
                if len(self._head) >= _SNIFF:
                    self._check_head()
            self.hash.update(chunk)
            self._mp4.feed(chunk)
            self.written += len(chunk)
        self._fh.seek(self.written)

    def write_batch(self, chunks: list[bytes]) -> None:
        try:
            self._write_batch(chunks)
        except BaseException:
            # A failed write may leave a gap: the part can no longer be resumed.
            self._bad = True
            raise

    def _write_batch(self, chunks: list[bytes]) -> None:
        if self.keep_free is not None:
            # Stop before the write that would cross the floor: the size may not be announced, and
            # other downloads (or anything else) may be filling the disk at the same time.
            batch = sum(map(len, chunks))
            try:
                check_room(self._parent, batch, self.keep_free, job_id=self.job_id)
            except InsufficientStorageError as exc:
                needed = self.expected if self.expected is not None else self.written + batch
                raise InsufficientStorageError(needed, self.written + exc.free, job_id=self.job_id) from None
        for chunk in chunks:
            if not self._checked:
                # Decide on the first bytes of the file, however the network happened to split them.
                self._head += chunk[: _SNIFF - len(self._head)]
                if len(self._head) >= _SNIFF:
                    self._check_head()
            view = memoryview(chunk)
            while view:
                view = view[self._fh.write(view) :]
            self.hash.update(chunk)
            self._mp4.feed(chunk)
            self.written += len(chunk)
        if self.expected is not None and self.written > self.expected:
            self._bad = True
            raise DownloadError(
                f"content of job {self.job_id} is longer than its Content-Length {self.expected}",
                job_id=self.job_id,
            )

    def _check_head(self) -> None:
        self._checked = True
        if not looks_like_video(self.content_type, self._head):
            self._bad = True
            raise DownloadError(
                f"content of job {self.job_id} is not a video (Content-Type {self.content_type!r})",
                job_id=self.job_id,
            )

    def commit(self) -> DownloadResult:
        if not self._checked:
            self._check_head()
        if self.expected is None and self._head[4:8] in _VIDEO_MAGIC_OFFSET4 and self.stream is None:
            # No length to compare with (a body ended by the connection closing): a cut connection
            # looks like a normal end, so the MP4's own box sizes must add up to what arrived.
            problem = self._mp4.problem()
            if problem:
                raise DownloadError(
                    f"content of job {self.job_id} is an incomplete MP4 ({self.written} bytes, no "
                    f"Content-Length): {problem}",
                    job_id=self.job_id,
                )
        if self.expected is not None and self.written != self.expected:
            raise DownloadError(
                f"content of job {self.job_id} ended after {self.written} of {self.expected} bytes",
                job_id=self.job_id,
            )
        if self.written == 0:
            self._bad = True
            raise DownloadError(f"content of job {self.job_id} is empty", job_id=self.job_id)
        if self.stream is not None:
            self.stream.flush()
            return DownloadResult(self.dest, self.written, self.hash.hexdigest(), self.content_type)
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.part, self.dest)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part + ".json")
        _fsync_dir(os.path.dirname(os.path.abspath(self.dest)))
        return DownloadResult(self.dest, self.written, self.hash.hexdigest(), self.content_type)

    def keep(self, chunks: list[bytes]) -> None:
        """After a cut connection: write what arrived, so a resume starts after it (errors ignored:
        the content checks then decide in `abort` whether the part is kept)."""
        if self.stream is not None or self._fh.closed or self._bad or not chunks:
            return
        with contextlib.suppress(Exception):
            self.write_batch(chunks)

    def abort(self) -> None:
        """Stop; keep the part for a resume (`resume_point`) unless its content was wrong or empty."""
        if self.stream is not None:
            return
        if not self._fh.closed:
            self._fh.close()
        if self._bad or self.written == 0:
            discard_partial(self.dest)


class TargetSink:
    """Feeds an `AsyncDownloadTarget` with the checks `DownloadSink` applies to a file.

    Nothing is kept between attempts: `start` begins at byte 0. Each batch is checked before the
    target sees it (the first bytes must be a video; never more than the announced length), hashed
    and walked for the MP4 box structure in a worker thread (sha256 releases the GIL), then
    written. `commit` calls the target's commit only once every check passed; `abort` is safe at
    any point and never raises on the target's account (the failure being handled wins).
    """

    def __init__(
        self, target: AsyncDownloadTarget, job_id: str, expected: int | None, content_type: str | None
    ) -> None:
        self.target = target
        self.job_id = job_id
        self.expected = expected
        self.content_type = content_type
        self.written = 0
        self.hash = hashlib.sha256()
        self._mp4 = Mp4Walker()
        self._head = b""
        self._checked = False
        self._committed = False

    async def start(self) -> None:
        await self.target.start(self.expected, self.content_type)

    async def write_batch(self, chunks: list[bytes]) -> None:
        if not chunks:
            return
        size = sum(map(len, chunks))
        if self.expected is not None and self.written + size > self.expected:
            raise DownloadError(
                f"content of job {self.job_id} is longer than its Content-Length {self.expected}",
                job_id=self.job_id,
            )
        for chunk in chunks:
            if self._checked:
                break
            self._head += chunk[: _SNIFF - len(self._head)]
            if len(self._head) >= _SNIFF:
                self._check_head()
        await asyncio.to_thread(self._digest, chunks)
        await self.target.write(chunks)
        self.written += size

    def _digest(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.hash.update(chunk)
            self._mp4.feed(chunk)

    def _check_head(self) -> None:
        self._checked = True
        if not looks_like_video(self.content_type, self._head):
            raise DownloadError(
                f"content of job {self.job_id} is not a video (Content-Type {self.content_type!r})",
                job_id=self.job_id,
            )

    async def commit(self) -> DownloadResult:
        if not self._checked:
            self._check_head()
        if self.expected is None and self._head[4:8] in _VIDEO_MAGIC_OFFSET4:
            problem = self._mp4.problem()  # no length to compare with: the boxes must add up
            if problem:
                raise DownloadError(
                    f"content of job {self.job_id} is an incomplete MP4 ({self.written} bytes, no "
                    f"Content-Length): {problem}",
                    job_id=self.job_id,
                )
        if self.expected is not None and self.written != self.expected:
            raise DownloadError(
                f"content of job {self.job_id} ended after {self.written} of {self.expected} bytes",
                job_id=self.job_id,
            )
        if self.written == 0:
            raise DownloadError(f"content of job {self.job_id} is empty", job_id=self.job_id)
        sha256 = self.hash.hexdigest()
        where = await self.target.commit(self.written, sha256)
        self._committed = True
        return DownloadResult(where, self.written, sha256, self.content_type)

    async def abort(self) -> None:
        """Tell the target to discard the attempt (shielded: a second cancellation does not stop it)."""
        if self._committed:
            return
        with contextlib.suppress(Exception):
            await asyncio.shield(self.target.abort())


def stream_started(stream: BinaryIO) -> bool:
    """Whether bytes already went to `stream` (then another source cannot start it over)."""
    try:
        return stream.tell() > 0
    except (OSError, ValueError, AttributeError):
        return True  # a pipe: assume so, rather than write a second copy after a partial one


def discard_partial(dest: str) -> None:
    """Remove what an interrupted download of `dest` kept."""
    for path in (dest + ".part", dest + ".part.json"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def resume_point(dest: str, job_id: str) -> tuple[int, str | None]:
    """Bytes of `<dest>.part` kept by an interrupted download of this job (0: none), and its ETag."""
    try:
        with open(dest + ".part.json") as fh:
            meta = json.load(fh)
        size = os.path.getsize(dest + ".part")
    except (OSError, ValueError):
        return 0, None
    if not isinstance(meta, dict) or meta.get("job_id") != job_id:
        return 0, None
    total = meta.get("size")
    if isinstance(total, int) and size >= total:
        return 0, None  # nothing left to fetch, or not the same file: start again
    etag = meta.get("etag")
    return size, etag if isinstance(etag, str) else None


def range_headers(offset: int, etag: str | None) -> dict[str, str]:
    """Ask for the rest of the file from `offset` (only if it is still the same file, when known)."""
    if offset <= 0:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    if etag and not etag.startswith("W/"):
        headers["If-Range"] = etag
    return headers


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)


def content_span(response: httpx.Response, offset: int) -> tuple[int, int | None] | None:
    """Where the response body starts in the file and the file's full size (None: unknown).

    A 206 must cover exactly `offset` to the end; a 200 is the whole file (a server that ignores
    Range, or an If-Range that no longer matches). None: the answer cannot be used as it is.
    """
    if response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if offset <= 0 or not match:
            return None
        first, last, total = (int(g) for g in match.groups())
        if first != offset or last != total - 1:
            return None
        return offset, total
    return 0, content_length(response)


class Batcher:
    """Groups network chunks into batches of about `size` bytes for `DownloadSink.write_batch`."""

    def __init__(self, size: int = CHUNK_SIZE) -> None:
        self.size = size
        self.chunks: list[bytes] = []
        self.pending = 0

    def add(self, chunk: bytes) -> list[bytes] | None:
        self.chunks.append(chunk)
        self.pending += len(chunk)
        if self.pending < self.size:
            return None
        return self.take()

    def take(self) -> list[bytes]:
        batch, self.chunks, self.pending = self.chunks, [], 0
        return batch


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or response.headers.get("content-encoding"):
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 0 else None
