"""Writing a download to disk: the content checks, free space above the floor, hashing, atomic commit.

Moved out of `_base` as it grew; the sync and async clients feed it the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

import httpx

from ._exceptions import DownloadError, InsufficientStorageError
from ._mp4check import mp4_structure_problem
from ._storage import check_room
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
    """

    def __init__(
        self,
        dest: str,
        job_id: str,
        expected: int | None,
        content_type: str | None,
        keep_free: int | None = None,
    ) -> None:
        self.dest = dest
        self.part = dest + ".part"
        self.job_id = job_id
        self.expected = expected
        self.content_type = content_type
        self.keep_free = keep_free
        self.written = 0
        self.hash = hashlib.sha256()
        self._checked = False
        self._head = b""
        self._parent = os.path.dirname(os.path.abspath(dest))
        os.makedirs(self._parent, exist_ok=True)
        if keep_free is not None and expected is not None:
            # Refuse before the first byte: a download that cannot fit would only fill the disk.
            check_room(self._parent, expected, keep_free, job_id=job_id)
        self._fh = open(self.part, "wb", buffering=0)  # noqa: SIM115 - closed in commit()/abort()

    def write_batch(self, chunks: list[bytes]) -> None:
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
            self.written += len(chunk)
        if self.expected is not None and self.written > self.expected:
            raise DownloadError(
                f"content of job {self.job_id} is longer than its Content-Length {self.expected}",
                job_id=self.job_id,
            )

    def _check_head(self) -> None:
        self._checked = True
        if not looks_like_video(self.content_type, self._head):
            raise DownloadError(
                f"content of job {self.job_id} is not a video (Content-Type {self.content_type!r})",
                job_id=self.job_id,
            )

    def commit(self) -> DownloadResult:
        if not self._checked:
            self._check_head()
        if self.expected is None and self._head[4:8] in _VIDEO_MAGIC_OFFSET4:
            # No length to compare with (a body ended by the connection closing): a cut connection
            # looks like a normal end, so the MP4's own box sizes must add up to what arrived.
            with open(self.part, "rb") as fh:
                problem = mp4_structure_problem(fh, self.written)
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
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.part, self.dest)
        _fsync_dir(os.path.dirname(os.path.abspath(self.dest)))
        return DownloadResult(self.dest, self.written, self.hash.hexdigest(), self.content_type)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part)


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
