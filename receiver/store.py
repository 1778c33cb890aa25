"""The job store: a small Protocol (the seam for a future PostgreSQL store) and its SQLite implementation.

Writes go through the single batching writer (`receiver._writer`); reads use their own connection
(WAL lets them run beside the writer).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Protocol

from client import VideoJob

from . import records
from ._db import connect, migrate
from ._writer import StoreUnavailable, Writer
from .records import AppliedDelivery, ApplyResult, Delivery, RecordedDelivery

__all__ = [
    "AppliedBatch",
    "AppliedDelivery",
    "Delivery",
    "JobStore",
    "RecordedDelivery",
    "SQLiteJobStore",
    "StoreUnavailable",
]


@dataclass(frozen=True)
class AppliedBatch:
    deliveries: list[AppliedDelivery]
    seconds: float  # time spent applying them (not waiting for the commit): the applier paces itself by it


class JobStore(Protocol):
    async def record_delivery(self, delivery: Delivery) -> RecordedDelivery: ...
    async def apply_pending(self, limit: int, *, isolate: bool = False) -> AppliedBatch: ...
    async def apply_poll(self, job: VideoJob) -> ApplyResult: ...
    async def register_job(
        self, job_id: str, *, model: str | None, prompt: str | None, first_poll_at: float
    ) -> bool: ...
    async def schedule_poll(self, job_id: str, next_at: float | None, *, attempted: bool = True) -> None: ...
    async def due_polls(self, now: float, limit: int) -> list[dict]: ...
    async def claim_downloads(self, now: float, limit: int) -> list[dict]: ...
    async def finish_download(
        self, job_id: str, index: int, *, path: str, size: int, sha256: str
    ) -> None: ...
    async def retry_download(self, job_id: str, index: int, *, next_at: float, error: str) -> None: ...
    async def end_download(self, job_id: str, index: int, *, state: str, error: str) -> None: ...
    async def requeue_interrupted(self) -> int: ...
    async def check_writable(self) -> None: ...
    def get_job(self, job_id: str) -> dict | None: ...
    def list_jobs(self, **filters: Any) -> tuple[list[dict], str | None]: ...
    def output_path(self, job_id: str, index: int) -> str | None: ...
    def queue_depth(self) -> int: ...
    def pending_deliveries(self) -> int: ...
    def writes_waiting(self) -> int: ...
    def next_download_at(self) -> float | None: ...


class SQLiteJobStore:
    def __init__(self, path: str) -> None:
        self.path = path
        write_conn = connect(path)
        migrate(write_conn)
        self._writer = Writer(write_conn)
        self._write_conn = write_conn
        self._read = connect(path)

    def close(self) -> None:
        self._writer.close()
        self._write_conn.close()
        self._read.close()

    # -- writes (through the one writer) -------------------------------------------------------

    async def record_delivery(self, delivery: Delivery) -> RecordedDelivery:
        return await self._writer.run(records.record_delivery, delivery)

    async def apply_pending(self, limit: int, *, isolate: bool = False) -> AppliedBatch:
        """Apply up to `limit` pending deliveries; `isolate`: a delivery that raises is marked failed."""
        return await self._writer.run(_apply_pending, limit, isolate)

    async def apply_poll(self, job: VideoJob) -> ApplyResult:
        return await self._writer.run(records.apply_job_update, job, source="poll", now=time.time())

    async def register_job(
        self, job_id: str, *, model: str | None, prompt: str | None, first_poll_at: float
    ) -> bool:
        return await self._writer.run(
            records.register_job,
            job_id,
            model=model,
            prompt=prompt,
            now=time.time(),
            first_poll_at=first_poll_at,
        )

    async def schedule_poll(self, job_id: str, next_at: float | None, *, attempted: bool = True) -> None:
        await self._writer.run(records.schedule_poll, job_id, next_at, attempted=attempted)

    async def add_event(self, job_id: str, source: str, kind: str, detail: str | None = None) -> None:
        await self._writer.run(records.add_event, job_id, time.time(), source, kind, None, detail)

    async def claim_downloads(self, now: float, limit: int) -> list[dict]:
        return await self._writer.run(records.claim_downloads, now, limit)

    async def finish_download(self, job_id: str, index: int, *, path: str, size: int, sha256: str) -> None:
        await self._writer.run(
            records.finish_download, job_id, index, path=path, size=size, sha256=sha256, now=time.time()
        )

    async def retry_download(self, job_id: str, index: int, *, next_at: float, error: str) -> None:
        await self._writer.run(
            records.retry_download, job_id, index, next_at=next_at, error=error, now=time.time()
        )

    async def end_download(self, job_id: str, index: int, *, state: str, error: str) -> None:
        await self._writer.run(records.end_download, job_id, index, state=state, error=error, now=time.time())

    async def requeue_interrupted(self) -> int:
        return await self._writer.run(records.requeue_interrupted, time.time())

    async def check_writable(self) -> None:
        await self._writer.run(_touch)

    # -- reads (own connection; short queries run on the event loop) --------------------------

    async def due_polls(self, now: float, limit: int) -> list[dict]:
        return records.due_polls(self._read, now, limit)

    def get_job(self, job_id: str) -> dict | None:
        return records.get_job(self._read, job_id)

    def list_jobs(self, **filters: Any) -> tuple[list[dict], str | None]:
        return records.list_jobs(self._read, **filters)

    def output_path(self, job_id: str, index: int) -> str | None:
        return records.output_path(self._read, job_id, index)

    def queue_depth(self) -> int:
        return records.queue_depth(self._read)

    def pending_deliveries(self) -> int:
        return records.pending_count(self._read)

    def writes_waiting(self) -> int:
        """Writes in the current batch or queued behind it: how hard the store is being pushed right now."""
        return self._writer.load

    def next_download_at(self) -> float | None:
        return records.next_download_at(self._read)


def _apply_pending(conn: sqlite3.Connection, limit: int, isolate: bool) -> AppliedBatch:
    started = time.perf_counter()
    applied = records.apply_pending(conn, limit, time.time(), isolate=isolate)
    return AppliedBatch(applied, time.perf_counter() - started)


def _touch(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('ready_check', ?)", (str(time.time()),))
