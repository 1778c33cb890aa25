"""How slow a download may be: a deadline scaled to its size, and a minimum rate with a grace period.

Pure logic fed by the sync and async download loops (`RateGuard.feed` per chunk). Per-read timeouts
alone let a server drip a byte a second forever and hold a download slot; this bounds the whole.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from ._exceptions import DownloadTooSlow


@dataclass(frozen=True)
class RatePolicy:
    """`min_rate` bytes/s (0 turns the guard off); deadline = `base` s + size / `min_rate`.

    The rate is a token bucket: a download may fall behind `min_rate` by at most `grace` seconds'
    worth of bytes, and a fast start banks at most that much, so a long stall is never excused.
    """

    min_rate: float = 64 * 1024
    base: float = 60.0
    grace: float = 30.0

    def guard(self, expected: int | None, now: float, *, job_id: str | None = None) -> RateGuard:
        return RateGuard(self, expected, now, job_id)


class RateGuard:
    """One download's deadline and rate bucket; `feed` raises DownloadTooSlow once either is missed."""

    def __init__(self, policy: RatePolicy, expected: int | None, now: float, job_id: str | None) -> None:
        self.policy = policy
        self.job_id = job_id
        self.expected = expected
        self.received = 0
        self.started = now
        self.enabled = policy.min_rate > 0
        self._cap = policy.min_rate * policy.grace
        self._credit = self._cap
        self._last = now
        self.deadline = (
            now + policy.base + expected / policy.min_rate
            if self.enabled and expected is not None
            else math.inf
        )

    def feed(self, n: int, now: float) -> None:
        """Count `n` bytes received at `now`; raise if the download was already too slow by then."""
        self.check(now)
        if self.enabled:
            self._credit = min(self._cap, self._credit - self.policy.min_rate * (now - self._last) + n)
            self._last = now
        self.received += n

    def check(self, now: float) -> None:
        """Raise DownloadTooSlow if, with no more bytes, the download has missed its deadline or rate."""
        if not self.enabled:
            return
        if now > self.deadline:
            size = f"{self.received} of {self.expected}"
            raise DownloadTooSlow(
                f"download cut: not finished within its deadline of {self.deadline - self.started:.1f}s "
                f"({size} bytes; minimum rate {self.policy.min_rate:g} bytes/s)",
                job_id=self.job_id,
            )
        if self._credit - self.policy.min_rate * (now - self._last) < 0:
            raise DownloadTooSlow(
                f"download cut: slower than the minimum rate {self.policy.min_rate:g} bytes/s for more "
                f"than {self.policy.grace:g}s ({self.received} bytes in {now - self.started:.1f}s)",
                job_id=self.job_id,
            )

    def trips_at(self) -> float:
        """When `check` will raise if no further bytes arrive (inf when the guard is off)."""
        if not self.enabled:
            return math.inf
        return min(self.deadline, self._last + self._credit / self.policy.min_rate)


class Watchdog:
    """Cuts the current asyncio task when `guard` trips while no chunk arrives (a stalled read
    feeds nothing). Lazy: it wakes at the guard's trip time and re-arms if bytes came meanwhile,
    so the hot loop never touches a timer. The guard must be fed with `loop.time()`."""

    def __init__(self, guard: RateGuard) -> None:
        self.guard = guard
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.fired = False
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        when = self.guard.trips_at()
        if math.isfinite(when):
            self._handle = self.loop.call_at(when + 0.001, self._wake)

    def _wake(self) -> None:
        if self.loop.time() <= self.guard.trips_at():
            self._arm()
            return
        self.fired = True
        if self.task is not None:
            self.task.cancel()

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def translate(self, exc: BaseException) -> DownloadTooSlow | None:
        """The DownloadTooSlow behind a CancelledError this watchdog caused; None for any other."""
        self.disarm()
        if not (self.fired and isinstance(exc, asyncio.CancelledError)):
            return None
        self.fired = False
        # Python 3.11+: if someone else cancelled the task too (shutdown), that cancellation wins.
        if self.task is not None and hasattr(self.task, "uncancel") and self.task.uncancel() > 0:
            return None
        try:
            self.guard.check(self.loop.time() + 0.01)
        except DownloadTooSlow as slow:
            return slow
        return DownloadTooSlow("download cut: too slow", job_id=self.guard.job_id)
