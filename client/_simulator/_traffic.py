"""What the simulator served, per output and per job: for tests that count work done twice.

- `OutputTraffic`: per output, how many bodies were started, how many were sent to the end, how
  many are being sent now, and the bytes sent. A download cut off half-way (the client died or
  hung up) is started but not completed: "each output served once, plus one retry per killed
  download" is `completed == 1 and started <= 1 + killed`.
- `PollTraffic`: per job, how many polls were answered and the most that were in flight at once.
  Two workers polling the same job at the same time show up as `max_concurrent >= 2` (make the
  polls last with the `poll_latency` fault, else an instant answer never overlaps another).

Updated from the server's event loop, read from any thread (the admin endpoint, a test).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class _Served:
    size: int
    started: int = 0
    completed: int = 0
    in_flight: int = 0
    bytes_sent: int = 0
    ranges: int = 0


class OutputTraffic:
    """Bodies of each output (`<job id>/<index>`): started, completed, in flight, bytes sent."""

    def __init__(self) -> None:
        self._items: dict[str, _Served] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(job_id: str, index: int) -> str:
        return f"{job_id}/{index}"

    def start(self, job_id: str, index: int, size: int, *, partial: bool) -> str:
        key = self.key(job_id, index)
        with self._lock:
            item = self._items.setdefault(key, _Served(size=size))
            item.started += 1
            item.in_flight += 1
            item.ranges += partial
        return key

    def sent(self, key: str, n: int) -> None:
        with self._lock:
            self._items[key].bytes_sent += n

    def finish(self, key: str, *, completed: bool) -> None:
        with self._lock:
            item = self._items[key]
            item.in_flight -= 1
            item.completed += completed

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {key: asdict(item) for key, item in self._items.items()}

    def totals(self) -> dict[str, int]:
        with self._lock:
            items = list(self._items.values())
            return {
                "outputs": len(items),
                "started": sum(i.started for i in items),
                "completed": sum(i.completed for i in items),
                "in_flight": sum(i.in_flight for i in items),
                "bytes_sent": sum(i.bytes_sent for i in items),
            }

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class _Polled:
    count: int = 0
    in_flight: int = 0
    max_concurrent: int = 0


class PollTraffic:
    """Polls of each job: answered, in flight now, and the most in flight at once."""

    def __init__(self) -> None:
        self._items: dict[str, _Polled] = {}
        self._lock = threading.Lock()

    def enter(self, job_id: str) -> None:
        with self._lock:
            item = self._items.setdefault(job_id, _Polled())
            item.count += 1
            item.in_flight += 1
            item.max_concurrent = max(item.max_concurrent, item.in_flight)

    def leave(self, job_id: str) -> None:
        with self._lock:
            self._items[job_id].in_flight -= 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {job_id: asdict(item) for job_id, item in self._items.items()}

    def totals(self) -> dict[str, Any]:
        with self._lock:
            items = list(self._items.values())
            return {
                "jobs": len(items),
                "polls": sum(i.count for i in items),
                "max_concurrent": max((i.max_concurrent for i in items), default=0),
            }

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
