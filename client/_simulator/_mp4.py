"""The bytes the simulator serves as a video: a real tiny MP4, padded to any requested size.

Layout of every output: the job's video (`_video.video_bytes`: a valid faststart MP4, `moov`
before `mdat`, of the requested frame size and length), then one top-level ISO-BMFF `free` box
filling the file up to the requested size. Players and demuxers skip
`free` boxes, so the padded file still opens and decodes. The padding is a deterministic function
of (job id, output index): a 64 KiB block of chained sha256 digests, repeated. So different jobs
differ, the same job is byte-identical on every download, any byte range can be produced without
reading what comes before it, and memory stays flat however large the file.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from functools import lru_cache

from ._video import DEFAULT_VIDEO, VideoSpec, video_bytes

BLOCK = 64 * 1024
"""Size of the repeated padding block."""
CHUNK = 512 * 1024
"""Default size of the pieces the content is streamed in."""
MAX_SIZE = 1 << 40
"""Largest output size accepted (1 TiB); the stream never holds more than a chunk in memory."""

_BOX_HEADER = 8
_LARGE_BOX_HEADER = 16
_MAX_32BIT_BOX = 0xFFFFFFFF


def sample_bytes(video: VideoSpec = DEFAULT_VIDEO) -> bytes:
    """The bare video (no padding)."""
    return video_bytes(video)


def sample_size(video: VideoSpec = DEFAULT_VIDEO) -> int:
    return len(video_bytes(video))


def check_size(size: int, video: VideoSpec | None = None) -> int:
    """Return `size` if an output can have exactly that many bytes, else raise ValueError.

    A `free` box needs at least 8 bytes, so sizes between the video's own size and that + 8
    (exclusive) cannot be padded exactly. Without `video`, only the type and the upper bound are
    checked (the video is known once the request is).
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"bytes must be an integer, got {size!r}")
    if size > MAX_SIZE:
        raise ValueError(f"bytes must be at most {MAX_SIZE}, got {size}")
    if video is None:
        return size
    base = sample_size(video)
    if size != base and size < base + _BOX_HEADER:
        raise ValueError(
            f"bytes must be {base} (the bare {video.width}x{video.height} {video.seconds} s video) "
            f"or at least {base + _BOX_HEADER}, got {size}"
        )
    return size


def free_box_header(box_size: int) -> bytes:
    """Header of a `free` box of `box_size` bytes in total (64-bit `largesize` form when needed)."""
    if box_size <= _MAX_32BIT_BOX:
        return struct.pack(">I4s", box_size, b"free")
    return struct.pack(">I4sQ", 1, b"free", box_size)


def _head(size: int, video: VideoSpec) -> bytes:
    """Video plus the padding box header: everything before the padding payload."""
    sample = video_bytes(video)
    pad = size - len(sample)
    if pad <= 0:
        return sample
    header = free_box_header(pad)
    if pad < len(header):  # only reachable past 4 GiB - 1 with a tiny remainder: impossible
        raise ValueError(f"cannot pad to {size} bytes")
    return sample + header


@lru_cache(maxsize=32)
def padding_block(job_id: str, index: int) -> bytes:
    """The 64 KiB padding block of one output (cached: a few ms to build)."""
    seed = hashlib.sha256(f"openrouter-video-simulator\x00{job_id}\x00{index}".encode()).digest()
    parts = []
    digest = seed
    for _ in range(BLOCK // 32):
        digest = hashlib.sha256(digest + seed).digest()
        parts.append(digest)
    return b"".join(parts)


def iter_content(
    job_id: str,
    index: int,
    size: int,
    start: int = 0,
    stop: int | None = None,
    chunk: int = CHUNK,
    video: VideoSpec = DEFAULT_VIDEO,
) -> Iterator[bytes | memoryview]:
    """Yield bytes `[start, stop)` of the output, in pieces of at most `chunk` bytes.

    Padding pieces are zero-copy views of one buffer of about `chunk + 64 KiB` bytes.
    """
    stop = size if stop is None else min(stop, size)
    chunk = max(1, chunk)
    head = _head(size, video)
    pos = start
    view: memoryview | None = None
    while pos < stop:
        if pos < len(head):
            end = min(stop, len(head), pos + chunk)
            yield head[pos:end]
            pos = end
            continue
        if view is None:
            repeats = -(-chunk // BLOCK) + 1
            view = memoryview(padding_block(job_id, index) * repeats)
        phase = (pos - len(head)) % BLOCK
        n = min(chunk, stop - pos)
        yield view[phase : phase + n]
        pos += n


@lru_cache(maxsize=256)
def content_sha256(job_id: str, index: int, size: int, video: VideoSpec = DEFAULT_VIDEO) -> str:
    """sha256 hex digest of a whole output (cached; about 1 s per GB the first time)."""
    digest = hashlib.sha256()
    for piece in iter_content(job_id, index, size, chunk=4 * 1024 * 1024, video=video):
        digest.update(piece)
    return digest.hexdigest()


def etag(job_id: str, index: int, size: int, video: VideoSpec = DEFAULT_VIDEO) -> str:
    """A strong ETag: the content is a pure function of these values."""
    key = f"{job_id}/{index}/{size}/{video.width}x{video.height}/{video.seconds}"
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'
