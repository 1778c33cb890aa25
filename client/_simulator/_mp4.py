"""The bytes the simulator serves as a video: a real tiny MP4, padded to any requested size.

Layout of every output: `sample.mp4` (a valid faststart MP4, `moov` before `mdat`), then one
top-level ISO-BMFF `free` box filling the file up to the requested size. Players and demuxers skip
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
from pathlib import Path

SAMPLE_PATH = Path(__file__).with_name("sample.mp4")
BLOCK = 64 * 1024
"""Size of the repeated padding block."""
CHUNK = 512 * 1024
"""Default size of the pieces the content is streamed in."""
MAX_SIZE = 1 << 40
"""Largest output size accepted (1 TiB); the stream never holds more than a chunk in memory."""

_BOX_HEADER = 8
_LARGE_BOX_HEADER = 16
_MAX_32BIT_BOX = 0xFFFFFFFF


@lru_cache(maxsize=1)
def sample_bytes() -> bytes:
    """The committed sample video (read once)."""
    return SAMPLE_PATH.read_bytes()


def sample_size() -> int:
    return len(sample_bytes())


def check_size(size: int) -> int:
    """Return `size` if an output can have exactly that many bytes, else raise ValueError.

    A `free` box needs at least 8 bytes, so sizes between the sample size and sample size + 8
    (exclusive) cannot be padded exactly.
    """
    base = sample_size()
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"bytes must be an integer, got {size!r}")
    if size > MAX_SIZE:
        raise ValueError(f"bytes must be at most {MAX_SIZE}, got {size}")
    if size != base and size < base + _BOX_HEADER:
        raise ValueError(
            f"bytes must be {base} (the bare sample) or at least {base + _BOX_HEADER}, got {size}"
        )
    return size


def free_box_header(box_size: int) -> bytes:
    """Header of a `free` box of `box_size` bytes in total (64-bit `largesize` form when needed)."""
    if box_size <= _MAX_32BIT_BOX:
        return struct.pack(">I4s", box_size, b"free")
    return struct.pack(">I4sQ", 1, b"free", box_size)


def _head(size: int) -> bytes:
    """Sample plus the padding box header: everything before the padding payload."""
    sample = sample_bytes()
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
    job_id: str, index: int, size: int, start: int = 0, stop: int | None = None, chunk: int = CHUNK
) -> Iterator[bytes | memoryview]:
    """Yield bytes `[start, stop)` of the output, in pieces of at most `chunk` bytes.

    Padding pieces are zero-copy views of one buffer of about `chunk + 64 KiB` bytes.
    """
    stop = size if stop is None else min(stop, size)
    chunk = max(1, chunk)
    head = _head(size)
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
def content_sha256(job_id: str, index: int, size: int) -> str:
    """sha256 hex digest of a whole output (cached; about 1 s per GB the first time)."""
    digest = hashlib.sha256()
    for piece in iter_content(job_id, index, size, chunk=4 * 1024 * 1024):
        digest.update(piece)
    return digest.hexdigest()


def etag(job_id: str, index: int, size: int) -> str:
    """A strong ETag: the content is a pure function of these three values."""
    return '"' + hashlib.sha256(f"{job_id}/{index}/{size}".encode()).hexdigest()[:32] + '"'


def write_sample(path: Path | str = SAMPLE_PATH, seconds: int = 1, fps: int = 12, side: int = 64) -> int:
    """Regenerate the sample video with PyAV (h264 if available, else mpeg4); return its size.

    Only needed to rebuild `sample.mp4`; the simulator itself never imports PyAV.
    """
    import av  # test/dev dependency only

    codec = next((c for c in ("libx264", "h264", "mpeg4") if c in av.codecs_available), "mpeg4")
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "35", "preset": "veryslow"}
        for i in range(seconds * fps):
            pixels = bytearray()
            for y in range(side):
                for x in range(side):
                    pixels += bytes(((x * 4 + i * 16) % 256, (y * 4) % 256, (i * 20) % 256))
            frame = av.VideoFrame(side, side, "rgb24")
            frame.planes[0].update(bytes(pixels))
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    sample_bytes.cache_clear()
    return Path(path).stat().st_size
