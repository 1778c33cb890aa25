"""One serving process per data dir: an exclusive lock held for the life of the process.

Two receivers on one SQLite store and one videos folder would claim each other's downloads and
sweep each other's partial files. The lock is `flock` on `<data dir>/receiver.lock`: the kernel
drops it when the process ends, however it ends, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os


class StartupError(Exception):
    """The receiver cannot start; the message names the cause and is shown as one line."""


class DataDirBusy(StartupError):
    """Another process serves this data dir."""


class DataDirLock:
    FILE = "receiver.lock"

    def __init__(self, fd: int, data_dir: str) -> None:
        self._fd: int | None = fd
        self.data_dir = data_dir

    @classmethod
    def acquire(cls, data_dir: str) -> DataDirLock:
        data_dir = os.path.abspath(data_dir)
        try:
            os.makedirs(data_dir, exist_ok=True)
            fd = os.open(os.path.join(data_dir, cls.FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StartupError(f"cannot use data dir {data_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another receiver (pid {holder}) is serving data dir {data_dir}; "
                "stop it first, or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, data_dir)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
