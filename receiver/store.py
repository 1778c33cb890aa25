"""The job store: a small Protocol (the seam for a future PostgreSQL store) and its SQLite implementation.

Writes go through the single batching writer (`receiver._writer`); reads use their own connection
(WAL lets them run beside the writer).
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from openrouter_video import VideoJob

from . import records, retention
from ._datadir import StartupError
from ._db import check_integrity, connect, migrate
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

log = structlog.get_logger("receiver.store")

# How long a download claim lasts without renewal; the fetcher renews its claims at a third of it.
DOWNLOAD_LEASE = 60.0


@dataclass(frozen=True)
class AppliedBatch:
    deliveries: list[AppliedDelivery]
    seconds: float  # time spent applying them (not waiting for the commit): the applier paces itself by it


class JobStore(Protocol):
    lease: float  # seconds a download claim lasts without renewal

    async def record_delivery(self, delivery: Delivery) -> RecordedDelivery: ...
    async def apply_pending(self, limit: int, *, isolate: bool = False) -> AppliedBatch: ...
    async def apply_pending_for_job(self, job_id: str) -> list[AppliedDelivery]: ...
    async def apply_poll(self, job: VideoJob) -> ApplyResult: ...
    async def register_job(
        self, job_id: str, *, model: str | None, prompt: str | None, first_poll_at: float
    ) -> bool: ...
    async def schedule_poll(self, job_id: str, next_at: float | None, *, attempted: bool = True) -> None: ...
    async def add_event(self, job_id: str, source: str, kind: str, detail: str | None = None) -> None: ...
    async def due_polls(self, now: float, limit: int) -> list[dict[str, Any]]: ...
    async def mark_not_found_upstream(self, job_id: str, detail: str) -> None: ...
    async def delete_job(self, job_id: str) -> list[str] | None: ...
    async def prune(self, policy: retention.Policy, now: float) -> retention.Pruned: ...
    async def claim_downloads(self, now: float, limit: int) -> list[dict[str, Any]]: ...
    async def renew_claims(self, outputs: list[tuple[str, int]]) -> int: ...
    async def recover_claims(self) -> int: ...
    async def finish_download(
        self, job_id: str, index: int, *, path: str, size: int, sha256: str
    ) -> bool: ...
    async def retry_download(
        self, job_id: str, index: int, *, next_at: float, error: str, count_attempt: bool = True
    ) -> bool: ...
    async def end_download(self, job_id: str, index: int, *, state: str, error: str) -> bool: ...
    async def check_writable(self) -> None: ...
    async def reprocess_deliveries(self, delivery_ids: list[int] | None) -> list[AppliedDelivery]: ...
    def list_deliveries(
        self, *, state: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]: ...
    def get_job(self, job_id: str) -> dict[str, Any] | None: ...
    def list_jobs(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]: ...
    def output_path(self, job_id: str, index: int) -> str | None: ...
    def queue_depth(self) -> int: ...
    def jobs_by_status(self) -> dict[str, int]: ...
    def pending_deliveries(self) -> int: ...
    def writes_waiting(self) -> int: ...
    def next_download_at(self) -> float | None: ...

    # dashboard (receiver/ui/data.py is the one caller; see the dashboard section of receiver.records)
    def dashboard_jobs(self, **query: Any) -> dict[str, Any]: ...
    def dashboard_cost_total(self, **filters: Any) -> tuple[int, float] | None: ...
    def distinct_models(self) -> list[str]: ...
    def job_timeline(self, job_id: str) -> list[dict[str, Any]]: ...
    def job_polling(self, job_id: str) -> dict[str, Any] | None: ...
    def outputs_needing_attention(self, limit: int) -> list[dict[str, Any]]: ...
    def change_token(self) -> tuple[int, int]: ...
    def jobs_changed_since(self, event_id: int) -> list[str]: ...
    def last_delivery_at(self) -> float | None: ...
    async def retry_output(self, job_id: str, index: int, *, who: str) -> str | None: ...


def new_worker_id() -> str:
    """Who holds a claim: host, process and a random part (a restarted process is a new worker)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class SQLiteJobStore:
    """`exclusive`: this process serves the store alone (it holds the data-dir lock), so claims left by
    any other worker are known dead at start and are recovered at once, not when their lease runs out."""

    def __init__(
        self,
        path: str,
        *,
        worker: str | None = None,
        lease: float = DOWNLOAD_LEASE,
        exclusive: bool = False,
        check: bool = False,
    ) -> None:
        self.path = path
        self.worker = worker or new_worker_id()
        self.lease = lease
        self.exclusive = exclusive
        try:
            write_conn = connect(path)
            if check:
                check_integrity(write_conn, path)
            migrate(write_conn)
            self._identity = _file_identity(path)
        except sqlite3.Error as exc:
            raise StartupError(f"cannot open the database {path}: {exc}") from None
        except OSError as exc:
            raise StartupError(f"cannot open the database {path}: {exc.strerror or exc}") from None
        self._replaced = False
        self._writer = Writer(write_conn, before_commit=self._check_same_file)
        self._write_conn = write_conn
        self._read = connect(path)

    def close(self) -> None:
        self._writer.close()
        self._write_conn.close()
        self._read.close()

    def _check_same_file(self) -> None:
        """Before each commit: is the file written still the file at the path? Deleted or replaced, the
        commits would go to an unlinked inode and vanish at restart, so nothing more is acknowledged."""
        try:
            same = _file_identity(self.path) == self._identity
        except OSError:
            same = False
        if not same:
            if not self._replaced:
                self._replaced = True
                log.critical(
                    "store.file_replaced",
                    path=self.path,
                    hint="the database file was deleted or replaced under the running receiver; "
                    "nothing more is acknowledged: restart it",
                )
            raise StoreUnavailable(
                f"the database file {self.path} was deleted or replaced; restart the receiver"
            )

    # -- writes (through the one writer) -------------------------------------------------------

    async def record_delivery(self, delivery: Delivery) -> RecordedDelivery:
        return await self._writer.run(records.record_delivery, delivery)

    async def apply_pending(self, limit: int, *, isolate: bool = False) -> AppliedBatch:
        """Apply up to `limit` pending deliveries; `isolate`: a delivery that raises is marked failed."""
        return await self._writer.run(_apply_pending, limit, isolate)

    async def apply_pending_for_job(self, job_id: str) -> list[AppliedDelivery]:
        return await self._writer.run(records.apply_pending_for_job, job_id, time.time())

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

    async def mark_not_found_upstream(self, job_id: str, detail: str) -> None:
        await self._writer.run(records.mark_not_found_upstream, job_id, time.time(), detail)

    async def delete_job(self, job_id: str) -> list[str] | None:
        """Delete a job record with its events and outputs; its file paths (None: no such job)."""
        return await self._writer.run(records.delete_job, job_id)

    async def prune(self, policy: retention.Policy, now: float) -> retention.Pruned:
        """The retention policy applied to the records; the caller removes `Pruned.files` after."""
        return await self._writer.run(retention.prune, policy, now)

    async def claim_downloads(self, now: float, limit: int) -> list[dict[str, Any]]:
        return await self._writer.run(
            records.claim_downloads, now, limit, worker=self.worker, lease=self.lease
        )

    async def renew_claims(self, outputs: list[tuple[str, int]]) -> int:
        """Extend the leases of the outputs this worker is downloading; return how many it still holds."""
        return await self._writer.run(records.renew_claims, outputs, self.worker, time.time() + self.lease)

    async def recover_claims(self) -> int:
        """Claims known dead now: under the data-dir lock, every other worker's; otherwise none (their
        leases run out by themselves)."""
        if not self.exclusive:
            return 0
        return await self._writer.run(records.release_claims_of_others, self.worker, time.time())

    async def finish_download(self, job_id: str, index: int, *, path: str, size: int, sha256: str) -> bool:
        return await self._writer.run(
            records.finish_download,
            job_id,
            index,
            path=path,
            size=size,
            sha256=sha256,
            now=time.time(),
            worker=self.worker,
        )

    async def retry_download(
        self, job_id: str, index: int, *, next_at: float, error: str, count_attempt: bool = True
    ) -> bool:
        return await self._writer.run(
            records.retry_download,
            job_id,
            index,
            next_at=next_at,
            error=error,
            now=time.time(),
            worker=self.worker,
            count_attempt=count_attempt,
        )

    async def end_download(self, job_id: str, index: int, *, state: str, error: str) -> bool:
        return await self._writer.run(
            records.end_download, job_id, index, state=state, error=error, now=time.time(), worker=self.worker
        )

    async def check_writable(self) -> None:
        """Write a delivery row and roll it back, then commit: the path a webhook takes, end to end."""
        await self._writer.run(records.probe_delivery_write)

    async def reprocess_deliveries(self, delivery_ids: list[int] | None) -> list[AppliedDelivery]:
        """Apply stored deliveries not applied (all, or those of `delivery_ids`), as `openrouter-video
        reprocess` does on the server's shell; one that raises is marked failed, the rest go on."""
        return await self._writer.run(_reprocess, delivery_ids)

    # -- reads (own connection; short queries run on the event loop) --------------------------

    async def due_polls(self, now: float, limit: int) -> list[dict[str, Any]]:
        return records.due_polls(self._read, now, limit)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return records.get_job(self._read, job_id)

    def list_jobs(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        return records.list_jobs(self._read, **filters)

    def output_path(self, job_id: str, index: int) -> str | None:
        return records.output_path(self._read, job_id, index)

    def list_deliveries(
        self, *, state: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        return records.page_deliveries(self._read, state=state, cursor=cursor, limit=limit)

    def queue_depth(self) -> int:
        return records.queue_depth(self._read)

    def jobs_by_status(self) -> dict[str, int]:
        return records.jobs_by_status(self._read)

    def pending_deliveries(self) -> int:
        return records.pending_count(self._read)

    def writes_waiting(self) -> int:
        """Writes in the current batch or queued behind it: how hard the store is being pushed right now."""
        return self._writer.load

    def next_download_at(self) -> float | None:
        return records.next_download_at(self._read)

    # -- dashboard (receiver/ui/data.py is the one caller; see the dashboard section of records) --

    def dashboard_jobs(self, **query: Any) -> dict[str, Any]:
        return records.dashboard_jobs(self._read, **query)

    def dashboard_cost_total(self, **filters: Any) -> tuple[int, float] | None:
        return records.dashboard_cost_total(self._read, **filters)

    def distinct_models(self) -> list[str]:
        return records.distinct_models(self._read)

    def job_timeline(self, job_id: str) -> list[dict[str, Any]]:
        return records.job_timeline(self._read, job_id)

    def job_polling(self, job_id: str) -> dict[str, Any] | None:
        return records.job_polling(self._read, job_id)

    def outputs_needing_attention(self, limit: int) -> list[dict[str, Any]]:
        return records.outputs_needing_attention(self._read, limit)

    def change_token(self) -> tuple[int, int]:
        return records.change_token(self._read)

    def jobs_changed_since(self, event_id: int) -> list[str]:
        return records.jobs_changed_since(self._read, event_id)

    def last_delivery_at(self) -> float | None:
        return records.last_delivery_at(self._read)

    async def retry_output(self, job_id: str, index: int, *, who: str) -> str | None:
        """An operator's retry of a failed, gone or waiting output (see records.retry_output)."""
        return await self._writer.run(records.retry_output, job_id, index, time.time(), who=who)


def _apply_pending(conn: sqlite3.Connection, limit: int, isolate: bool) -> AppliedBatch:
    started = time.perf_counter()
    applied = records.apply_pending(conn, limit, time.time(), isolate=isolate)
    return AppliedBatch(applied, time.perf_counter() - started)


def _reprocess(conn: sqlite3.Connection, delivery_ids: list[int] | None) -> list[AppliedDelivery]:
    return records.reprocess_deliveries(conn, delivery_ids, time.time(), isolate=True)


def _file_identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino
