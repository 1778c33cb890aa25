"""The batching writer on a real SQLite file: batches, isolation of a failing write, lock waits off the loop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time

import pytest

from openrouter_video.receiver.storage.sqlite import _writer
from openrouter_video.receiver.storage.sqlite._db import connect
from openrouter_video.receiver.storage.sqlite._writer import StoreUnavailable, Writer


@pytest.fixture
def db_path(tmp_path) -> str:
    path = str(tmp_path / "w.db")
    with contextlib.closing(connect(path)) as conn:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    return path


def _insert(conn: sqlite3.Connection, key: str, value: int) -> int:
    conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))
    return value


def _explode(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("INSERT INTO t (k, v) VALUES (?, 0)", (key,))
    raise ValueError("this write fails on its own")


def _rows(path: str) -> dict[str, int]:
    with contextlib.closing(connect(path, readonly=True)) as conn:
        return dict(conn.execute("SELECT k, v FROM t").fetchall())


def test_concurrent_writes_share_commits_and_are_on_disk_when_answered(db_path) -> None:
    async def main() -> tuple[list[int], int]:
        writer = Writer(connect(db_path))
        try:
            results = await asyncio.gather(*(writer.run(_insert, f"k{i}", i) for i in range(200)))
            return results, writer.commits
        finally:
            writer.close()

    results, commits = asyncio.run(main())
    assert results == list(range(200))
    assert commits <= 3  # the writes queued together share a COMMIT (and its fsync)
    assert _rows(db_path) == {f"k{i}": i for i in range(200)}


def test_a_failing_write_is_rolled_back_alone(db_path) -> None:
    async def main() -> list[object]:
        writer = Writer(connect(db_path))
        try:
            calls = [writer.run(_insert, f"k{i}", i) for i in range(5)]
            calls.insert(2, writer.run(_explode, "bad"))
            calls.append(writer.run(_insert, "k0", 99))  # duplicate key: IntegrityError, alone too
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            writer.close()

    results = asyncio.run(main())
    assert isinstance(results[2], ValueError)
    assert isinstance(results[-1], sqlite3.IntegrityError)
    assert [r for r in results if isinstance(r, int)] == [0, 1, 2, 3, 4]
    assert _rows(db_path) == {f"k{i}": i for i in range(5)}  # nothing of "bad", k0 kept its value


def test_a_lock_held_by_another_process_is_waited_for_without_blocking_the_loop(db_path) -> None:
    other = connect(db_path)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.6, lambda: other.execute("COMMIT"))

    async def main() -> tuple[int, int, float]:
        writer = Writer(connect(db_path))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        try:
            started = time.monotonic()
            released.start()
            value = await writer.run(_insert, "after-lock", 7)
            return value, ticks, time.monotonic() - started
        finally:
            tick_task.cancel()
            writer.close()

    try:
        value, ticks, waited = asyncio.run(main())
    finally:
        released.join()
        other.close()
    assert value == 7 and _rows(db_path) == {"after-lock": 7}
    assert waited >= 0.5
    assert ticks >= 20  # the event loop kept running while the writer waited for the lock


def test_a_lock_held_too_long_fails_the_batch_as_unavailable(db_path, monkeypatch) -> None:
    monkeypatch.setattr(_writer, "BUSY_TIMEOUT_MS", 200)
    other = connect(db_path)
    other.execute("BEGIN IMMEDIATE")

    async def main() -> list[object]:
        writer = Writer(connect(db_path))
        try:
            return await asyncio.gather(
                writer.run(_insert, "a", 1), writer.run(_insert, "b", 2), return_exceptions=True
            )
        finally:
            writer.close()

    try:
        results = asyncio.run(main())
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert "locked" in str(results[0])
    assert _rows(db_path) == {}


def test_writes_after_close_are_refused(db_path) -> None:
    async def main() -> None:
        writer = Writer(connect(db_path))
        await writer.run(_insert, "a", 1)
        writer.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await writer.run(_insert, "b", 2)

    asyncio.run(main())
    assert _rows(db_path) == {"a": 1}
