"""Free space on the download's filesystem, checked against a floor the caller keeps for others."""

from __future__ import annotations

import os

from ._exceptions import InsufficientStorageError


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def check_room(directory: str, needed: int, keep_free: int, *, job_id: str | None = None) -> None:
    """Raise InsufficientStorageError unless `needed` more bytes leave `keep_free` bytes free."""
    above_floor = free_bytes(directory) - keep_free
    if needed > above_floor:
        raise InsufficientStorageError(needed, max(0, above_floor), job_id=job_id)
