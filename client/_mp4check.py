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


class Mp4Walker:
    """The same check over a stream, fed in order as the bytes arrive (nothing is re-read).

    `feed` only looks at box headers and skips the bodies by arithmetic: constant memory and a few
    comparisons per chunk, whatever the size. `problem()` once the stream ended gives what
    `mp4_structure_problem` would say of the whole. Used by the download sinks (a file or a target
    that cannot be read back, like an object store upload).
    """

    def __init__(self) -> None:
        self.size = 0  # bytes fed so far
        self._next = 0  # offset of the next box header
        self._header = b""  # the part of that header fed so far
        self._want = _HEADER  # its length: 16 once it says a 64-bit size follows
        self._last: tuple[bytes, int, int] | None = None  # kind, offset, size of the last box started
        self._seen: set[bytes] = set()
        self._problem: str | None = None
        self._to_end = False

    def feed(self, data: bytes | memoryview) -> None:
        end = self.size + len(data)
        while self._problem is None and not self._to_end and self._next + len(self._header) < end:
            start = self._next + len(self._header) - self.size
            self._header += bytes(data[start : start + self._want - len(self._header)])
            if len(self._header) < self._want:
                break
            self._box()
        self.size = end

    def _box(self) -> None:
        box_size, kind = struct.unpack(">I4s", self._header[:_HEADER])
        offset = self._next
        if not _is_box_type(kind):
            self._problem = f"no box type at offset {offset} ({kind!r})"
            return
        if box_size == 1:
            if self._want == _HEADER:
                self._want = _LARGE_HEADER  # the 64-bit size follows: read it first
                return
            (box_size,) = struct.unpack(">Q", self._header[_HEADER:_LARGE_HEADER])
            if box_size < _LARGE_HEADER:
                self._problem = f"box {kind!r} at offset {offset} has an impossible size {box_size}"
                return
        elif box_size == 0:
            self._seen.add(kind)  # the last box runs to the end of the file: no size left to check
            self._to_end = True
            return
        elif box_size < _HEADER:
            self._problem = f"box {kind!r} at offset {offset} has an impossible size {box_size}"
            return
        self._seen.add(kind)
        self._last = (kind, offset, box_size)
        self._next = offset + box_size
        self._header, self._want = b"", _HEADER

    def problem(self) -> str | None:
        """Why the bytes fed so far are not a whole MP4, or None if they are."""
        if self._problem is not None:
            return self._problem
        size = self.size
        if not self._to_end:
            if self._header:
                if len(self._header) < _HEADER:
                    return f"{len(self._header)} stray bytes after the last box at offset {self._next}"
                kind = self._header[4:8]
                return f"box {kind!r} at offset {self._next} is cut inside its 64-bit size"
            if self._next > size and self._last is not None:
                kind, offset, box_size = self._last
                return (
                    f"box {kind!r} at offset {offset} needs {box_size} bytes, only {size - offset} are there"
                )
        missing = [kind.decode() for kind in (b"moov", b"mdat") if kind not in self._seen]
        return f"no {' and no '.join(missing)} box" if missing else None
