"""Is a file a complete MP4? Its top-level ISO-BMFF boxes must add up exactly to its size.

Used when a response announced no length (a body delimited by the connection closing): a
connection cut early then leaves a file whose last box claims more bytes than are there.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_HEADER = 8
_LARGE_HEADER = 16


def mp4_structure_problem(fh: BinaryIO, size: int) -> str | None:
    """Why the `size` bytes of `fh` are not a whole MP4 (top-level boxes only), or None if they are.

    Each box is a 32-bit size and a 4-byte type; size 1 means a 64-bit `largesize` follows, size 0
    means "to the end of the file". Only headers are read: a few reads, whatever the file size.
    A video also needs its `moov` (the index) and an `mdat` (the media): a cut exactly between two
    boxes is caught unless everything a player needs had already arrived.
    """
    offset = 0
    seen: set[bytes] = set()
    while offset < size:
        if size - offset < _HEADER:
            return f"{size - offset} stray bytes after the last box at offset {offset}"
        fh.seek(offset)
        header = fh.read(_HEADER)
        if len(header) < _HEADER:
            return f"file shorter than its size {size}"
        box_size, kind = struct.unpack(">I4s", header)
        if not _is_box_type(kind):
            return f"no box type at offset {offset} ({kind!r})"
        if box_size == 1:
            large = fh.read(8)
            if len(large) < 8:
                return f"box {kind!r} at offset {offset} is cut inside its 64-bit size"
            (box_size,) = struct.unpack(">Q", large)
            if box_size < _LARGE_HEADER:
                return f"box {kind!r} at offset {offset} has an impossible size {box_size}"
        elif box_size == 0:
            seen.add(kind)  # the last box runs to the end of the file: no size left to check
            break
        elif box_size < _HEADER:
            return f"box {kind!r} at offset {offset} has an impossible size {box_size}"
        if offset + box_size > size:
            return f"box {kind!r} at offset {offset} needs {box_size} bytes, only {size - offset} are there"
        offset += box_size
        seen.add(kind)
    missing = [kind.decode() for kind in (b"moov", b"mdat") if kind not in seen]
    return f"no {' and no '.join(missing)} box" if missing else None


def _is_box_type(kind: bytes) -> bool:
    # Box types are four printable characters (a few registered ones use ©, 0xA9).
    return all(32 <= b < 127 or b == 0xA9 for b in kind)
