"""Terminal widgets on stderr: a job's live status line and a download's progress bar."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO

from .._types import VideoJob


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class StatusDisplay:
    """A job's status with elapsed time, on stderr.

    On a terminal one line is redrawn in place (ticking every half second); otherwise one line is
    written per status change, so logs stay readable.
    """

    def __init__(
        self, job_id: str, stream: IO[str] | None = None, tty: bool | None = None, tick: float = 0.5
    ) -> None:
        self.job_id = job_id
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.tick = tick
        self.status = "submitted"
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> StatusDisplay:
        if self.tty:
            self._draw()
            self._thread = threading.Thread(target=self._run, name="status-line", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self) -> str:
        return f"job {self.job_id}: {self.status} ({_fmt_elapsed(time.monotonic() - self.started)})"

    def update(self, job: VideoJob, elapsed: float | None = None) -> None:
        with self._lock:
            self.status = job.status
            if self.tty:
                self._draw_locked()
            else:
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self._draw()

    def _draw(self) -> None:
        with self._lock:
            self._draw_locked()

    def _draw_locked(self) -> None:
        text = self.line()
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            with self._lock:
                self._draw_locked()
                self.stream.write("\n")
                self.stream.flush()


class DownloadProgress:
    """Bytes, percentage and speed of a download, redrawn in place on a terminal (silent otherwise)."""

    def __init__(
        self, label: str, stream: IO[str] | None = None, tty: bool | None = None, min_interval: float = 0.1
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.min_interval = min_interval
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, written: int, total: int | None) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval and (total is None or written < total):
            return
        self._last = now
        self._drawn = True
        speed = written / max(now - self.started, 1e-6)
        if total:
            fraction = min(1.0, written / total)
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            text = f"{self.label} [{bar}] {fraction:4.0%} {_fmt_bytes(written)}/{_fmt_bytes(total)}"
        else:
            text = f"{self.label} {_fmt_bytes(written)}"
        self.stream.write(f"\r{text} {_fmt_bytes(speed)}/s ")
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
