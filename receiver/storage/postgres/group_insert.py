"""Group commit for webhook acknowledgements: concurrent deliveries share one INSERT.

Each acknowledgement waits for its row's commit to reach the disk. Alone, every delivery pays a
statement, a transaction and a WAL flush of its own, and this process a pool checkout and a round
trip. Under load the deliveries that arrive while a flush is running are gathered and written by the
next one as a single multi-row `INSERT ... SELECT FROM unnest(...)`: one statement, one transaction,
one flush, however many rows. An idle receiver is not slowed: a delivery that finds no flush running
starts one at once.

Duplicates keep their meaning: ON CONFLICT DO NOTHING skips a row that clashes with a stored one
(idempotency key or replay key) or with an earlier row of the same batch, and RETURNING names the
rows inserted; a delivery is new only if its own row is among them (the first of a batch's rows with
one key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._db import Conn, Database, storable_text

_INSERT_MANY = (
    "INSERT INTO deliveries (idempotency_key, received_at, signed_at, remote_addr, headers, body, replay_key, "
    "submission_id) SELECT k, ra, sa, addr, h, b, rk, sub FROM unnest(%s::text[], %s::float8[], %s::int8[], "
    "%s::text[], %s::text[], %s::bytea[], %s::bytea[], %s::text[]) "
    "WITH ORDINALITY AS r(k, ra, sa, addr, h, b, rk, sub, n) ORDER BY n "
    "ON CONFLICT DO NOTHING RETURNING id, idempotency_key, replay_key"
)


@dataclass(frozen=True)
class Row:
    idempotency_key: str
    received_at: float
    signed_at: int | None
    remote_addr: str | None
    headers: str
    body: bytes
    replay_key: bytes | None
    submission_id: str | None = None  # the callback URL's `?submission=` (it only links)


class GroupInsert:
    """`insert(row)` -> the new row's id, or None for a duplicate; at most `flushes` INSERTs at once."""

    def __init__(self, db: Database, *, flushes: int = 4, batch: int = 256) -> None:
        self._db = db
        self._flushes = flushes
        self._batch = batch
        self._waiting: list[tuple[Row, asyncio.Future[int | None]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def insert(self, row: Row) -> int | None:
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a waiter that went away leaves no "never retrieved" noise
        self._waiting.append((row, future))
        if self._running < self._flushes:
            self._running += 1
            task = asyncio.create_task(self._flush_while_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # The INSERT runs in its own task: a webhook request cancelled (client gone) must not cancel
        # the rows of the others; its own row is still committed, and a resend is a duplicate.
        return await asyncio.shield(future)

    async def _flush_while_waiting(self) -> None:
        try:
            while self._waiting:
                taken, self._waiting = self._waiting[: self._batch], self._waiting[self._batch :]
                try:
                    ids = await self._db.run(_inserter([row for row, _ in taken]), idempotent=True)
                except Exception as exc:  # StoreUnavailable: every waiter of the batch answers 503
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled (the store is closing): nobody is answered 2xx
                    for _, future in taken:
                        future.cancel()
                    raise
                for (_, future), new_id in zip(taken, ids, strict=True):
                    if not future.done():
                        future.set_result(new_id)
        finally:
            self._running -= 1


def _retrieved(future: asyncio.Future[int | None]) -> None:
    if not future.cancelled():
        future.exception()


def _inserter(rows: list[Row]) -> Callable[[Conn], Any]:
    columns = (
        [r.idempotency_key for r in rows],
        [r.received_at for r in rows],
        [r.signed_at for r in rows],
        [r.remote_addr for r in rows],
        [r.headers for r in rows],
        [r.body for r in rows],
        [r.replay_key for r in rows],
        [r.submission_id for r in rows],
    )

    async def insert(conn: Conn) -> list[int | None]:
        inserted = await (await conn.execute(_INSERT_MANY, columns)).fetchall()
        by_key = {row["idempotency_key"]: int(row["id"]) for row in inserted}
        ids: list[int | None] = []
        for row in rows:  # the first row with a key got it; a later one in the batch is its duplicate
            ids.append(by_key.pop(storable_text(row.idempotency_key), None))  # stored as the guard made it
        return ids

    return insert
