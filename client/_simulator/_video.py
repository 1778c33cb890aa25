"""Which video a job serves: its frame size and length, from the request or the model's defaults.

The pictures come from `samples/<W>x<H>.mp4`, tiny H.264 files encoded once by
`tools/make_sim_samples.py` (one per frame size the catalog can ask for). Each holds `FRAMES`
frames spanning one second; `retime` stretches them to the requested whole number of seconds by
rewriting the header fields that carry durations (`mvhd`, `tkhd`, `elst`, `mdhd`, `stts`), so
serving a 4 s or a 20 s video costs a dictionary lookup after the first request, and no encoding.

Defaults, when the request leaves them out: the first of the model's `supported_durations`,
`supported_resolutions` and `supported_aspect_ratios` (else 5 s, 720p, 16:9); a `size` wins over
resolution and aspect ratio. A frame size with no sample (a size a null catalog list let
through) gets the sample nearest in shape, then in area: `VideoSpec` says what is served.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ._catalog import dimensions

SAMPLES_DIR = Path(__file__).with_name("samples")
FRAMES = 12
"""Frames in every sample (they span 1 s as encoded, `seconds` once retimed)."""
DEFAULT_SECONDS = 5
DEFAULT_RESOLUTION = "720p"
DEFAULT_ASPECT_RATIO = "16:9"
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


@dataclass(frozen=True)
class VideoSpec:
    """What one output is: `width` x `height` pixels, `seconds` long."""

    width: int
    height: int
    seconds: int

    def to_dict(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height, "seconds": self.seconds}


@lru_cache(maxsize=1)
def sample_sizes() -> tuple[tuple[int, int], ...]:
    """Frame sizes with a sample file."""
    sizes = []
    for path in SAMPLES_DIR.glob("*.mp4"):
        w, _, h = path.stem.partition("x")
        sizes.append((int(w), int(h)))
    return tuple(sorted(sizes))


def nearest_size(width: int, height: int) -> tuple[int, int]:
    """`(width, height)` if there is a sample of that size, else the closest in shape, then area."""
    sizes = sample_sizes()
    if (width, height) in sizes:
        return width, height

    def distance(size: tuple[int, int]) -> tuple[float, float]:
        w, h = size
        return abs(math.log((w / h) / (width / height))), abs(math.log((w * h) / (width * height)))

    return min(sizes, key=distance)


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def video_for(
    model: dict[str, Any],
    duration: int | None = None,
    resolution: str | None = None,
    aspect_ratio: str | None = None,
    size: str | None = None,
) -> VideoSpec:
    """The video a request for `model` gets (values already validated against the model)."""
    seconds = duration or _first(model.get("supported_durations")) or DEFAULT_SECONDS
    if size:
        w, _, h = size.partition("x")
        width, height = int(w), int(h)
    else:
        tier = resolution or _first(model.get("supported_resolutions")) or DEFAULT_RESOLUTION
        ratio = aspect_ratio or _first(model.get("supported_aspect_ratios")) or DEFAULT_ASPECT_RATIO
        width, height = dimensions(tier, ratio)
    return VideoSpec(*nearest_size(width, height), int(seconds))


DEFAULT_VIDEO = VideoSpec(1280, 720, 4)
"""The video of `iter_content` and friends when none is given (tests and tools)."""


def _boxes(data: bytes | bytearray, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    """Every box under `[start, end)`, descending into the containers: type -> [(payload, end)]."""
    found: dict[bytes, list[tuple[int, int]]] = {}
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"malformed box {kind!r} at {pos}")
        found.setdefault(kind, []).append((pos + header, pos + size))
        if kind in _CONTAINERS:
            for inner, spans in _boxes(data, pos + header, pos + size).items():
                found.setdefault(inner, []).extend(spans)
        pos += size
    return found


def _put(data: bytearray, offset: int, wide: bool, value: int) -> None:
    if value >= 1 << (64 if wide else 32):
        raise ValueError(f"{value} does not fit its field")
    struct.pack_into(">Q" if wide else ">I", data, offset, value)


def retime(mp4: bytes, seconds: int) -> bytes:
    """The same one-track MP4 with its `FRAMES` frames spread evenly over `seconds` seconds.

    Raises ValueError for a layout this does not handle (several tracks or `stts` entries,
    composition offsets, an edit list that skips media): `tools/make_sim_samples.py` checks.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise ValueError(f"seconds must be a positive integer, got {seconds!r}")
    data = bytearray(mp4)
    boxes = _boxes(data, 0, len(data))
    if len(boxes.get(b"trak", [])) != 1 or b"ctts" in boxes:
        raise ValueError("need exactly one track and no composition offsets (ctts)")
    mvhd = boxes[b"mvhd"][0][0]
    wide = data[mvhd] == 1
    timescale = struct.unpack_from(">I", data, mvhd + (20 if wide else 12))[0]
    _put(data, mvhd + (24 if wide else 16), wide, seconds * timescale)
    tkhd = boxes[b"tkhd"][0][0]
    wide = data[tkhd] == 1
    _put(data, tkhd + (28 if wide else 20), wide, seconds * timescale)
    for elst, _end in boxes.get(b"elst", []):
        wide = data[elst] == 1
        count = struct.unpack_from(">I", data, elst + 4)[0]
        media_time = struct.unpack_from(">q" if wide else ">i", data, elst + (16 if wide else 12))[0]
        if count != 1 or media_time != 0:
            raise ValueError("need an edit list of one entry starting at media time 0")
        _put(data, elst + 8, wide, seconds * timescale)
    mdhd = boxes[b"mdhd"][0][0]
    wide = data[mdhd] == 1
    media_scale = struct.unpack_from(">I", data, mdhd + (20 if wide else 12))[0]
    _put(data, mdhd + (24 if wide else 16), wide, seconds * media_scale)
    stts = boxes[b"stts"][0][0]
    entries, frames = struct.unpack_from(">II", data, stts + 4)
    delta, rest = divmod(seconds * media_scale, frames)
    if entries != 1 or rest:
        raise ValueError(f"need one stts entry whose frames divide {seconds} s evenly")
    _put(data, stts + 12, False, delta)
    return bytes(data)


@lru_cache(maxsize=64)
def video_bytes(spec: VideoSpec = DEFAULT_VIDEO) -> bytes:
    """The MP4 of `spec` (its sample, retimed; cached)."""
    return retime((SAMPLES_DIR / f"{spec.width}x{spec.height}.mp4").read_bytes(), spec.seconds)
