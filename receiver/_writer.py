"""One writer thread for all writes from async code, committing in batches.

Each write is a function of the connection. The writer takes whatever is queued (up to
`max_batch`), runs each in its own SAVEPOINT inside one transaction, and COMMITs once: one fsync
for the whole batch. A write whose function raises is rolled back alone; a failed COMMIT (disk
full, database locked) fails every write of the batch with `StoreUnavailable`. Callers are
answered only after the COMMIT returned, so "answered" means "on disk".
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_STOP = object()


class StoreUnavailable(Exception):
    """The store could not commit (disk full, locked, I/O error): nothing of the write was kept."""


class Writer:
    def __init__(self, conn: sqlite3.Connection, *, max_batch: int = 512) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, kwargs, loop, future))
        return await future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[Any]) -> None:
        conn = self._conn
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, args, kwargs, _loop, _future in batch:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, fn(conn, *args, **kwargs)))
                    conn.execute("RELEASE op")
                except sqlite3.OperationalError:
                    raise  # disk full / I/O error: the whole batch fails below
                except Exception as exc:  # an error of this write alone
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = StoreUnavailable(f"the database could not commit: {exc}")
            results = [(False, error)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_fn, _args, _kwargs, loop, future), (ok, value) in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, items in by_loop.items():
            # One wake-up of the event loop per batch, not one per write.
            with contextlib.suppress(RuntimeError):  # that loop is closed; nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
