"""The dashboard's store (storage.base.Dashboard) on PostgreSQL: the same bounded reads as SQLite's
(keyset pages through the listing's indexes, a search window, a capped filter total, a loose index
scan for the model names), the change feed of `feed.py`, and an operator's retry of a download in
one transaction. The decisions are receiver.domain.dashboard's.
"""

from __future__ import annotations

import time
from typing import Any

from ...domain.dashboard import jobs_page, like_patterns, plan_output_retry, timeline
from ...domain.model import (
    CHANGES_LIMIT,
    AttentionOutput,
    Changes,
    ChangeToken,
    DeliveryRecord,
    FilterTotal,
    JobFilter,
    JobPolling,
    JobSearch,
    JobSearchPage,
    TimelineEntry,
)
from ...domain.pages import decode_cursor, filter_terms
from ._db import Conn, Database
from .changes import insert_events
from .deliveries import SHOWN as DELIVERY_COLUMNS
from .feed import changes_since
from .jobs import JOB_COLUMNS, job_record
from .wakeups import Wakeups

# A prompt substring or a job id prefix, case-insensitive (ILIKE; `\` escapes, as like_patterns writes).
_MATCH = "(prompt ILIKE %s OR id ILIKE %s)"
_NEWEST_FIRST, _OLDEST_FIRST = "created_at DESC, id DESC", "created_at ASC, id ASC"
# Failed or gone, or waiting after a failed attempt: the predicate of the outputs_attention index.
_ATTENTION = "(state IN ('failed', 'gone') OR (state = 'pending' AND error IS NOT NULL))"


def _where(filters: JobFilter, *more: str) -> tuple[str, list[Any]]:
    where, params = filter_terms(filters, "%s")
    where += more
    return (f"WHERE {' AND '.join(where)}" if where else ""), params


async def _rows(conn: Conn, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    return await (await conn.execute(sql, params)).fetchall()


class Dashboard:
    def __init__(self, db: Database, wakeups: Wakeups) -> None:
        self._db = db
        self._wakeups = wakeups

    async def _read(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return await self._db.run(lambda conn: _rows(conn, sql, params), idempotent=True)

    async def jobs_page(self, search: JobSearch) -> JobSearchPage:
        keyset: tuple[str, ...] = ()
        cursor: list[Any] = []
        if search.cursor:
            created_at, job_id = decode_cursor(search.cursor)
            keyset = ("(created_at, id) > (%s, %s)" if search.newer else "(created_at, id) < (%s, %s)",)
            cursor = [created_at, job_id]
        clause, params = _where(search.filters, *keyset)
        params += cursor
        order = _OLDEST_FIRST if search.newer else _NEWEST_FIRST
        limit = search.limit
        if not search.text:
            rows = await self._read(
                f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY {order} LIMIT %s", (*params, limit + 1)
            )
            if search.newer and len(rows) <= limit:  # fewer than a page is newer: that is the first page
                return await self.jobs_page(JobSearch(search.filters, limit=limit))
            return jobs_page([job_record(r) for r in rows], search)
        examined = f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY {order} LIMIT %s"
        # The window is read lazily in index order: the scan stops at limit + 1 matches (the outer
        # ORDER BY is the window's own: no sort is added).
        found = f"SELECT * FROM ({examined}) AS w WHERE {_MATCH} ORDER BY {order} LIMIT %s"
        # The last job of a full window: where the search stopped, when it found too few.
        last = f"SELECT created_at, id FROM jobs {clause} ORDER BY {order} OFFSET %s LIMIT 1"

        async def read(conn: Conn) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
            rows = await _rows(
                conn, found, (*params, search.window, *like_patterns(search.text or ""), limit + 1)
            )
            if len(rows) > limit:
                return rows, None
            edge = await _rows(conn, last, (*params, search.window - 1))
            return rows, edge[0] if edge else None

        rows, edge = await self._db.run(read, idempotent=True)
        where = (edge["created_at"], edge["id"]) if edge else None
        return jobs_page([job_record(r) for r in rows], search, where)

    async def filter_total(self, filters: JobFilter, text: str | None, *, cap: int) -> FilterTotal | None:
        clause, params = _where(filters)
        match_params = list(like_patterns(text)) if text else []
        match = _MATCH if text else "true"
        window = f"FROM jobs {clause} ORDER BY {_NEWEST_FIRST} LIMIT %s"

        async def read(conn: Conn) -> FilterTotal | None:
            if not (filters.status and filters.model):
                # Count up to the cap through the listing's index first: over the cap, no row is read.
                [counted] = await _rows(
                    conn, f"SELECT count(*) AS n FROM (SELECT 1 {window}) AS w", (*params, cap + 1)
                )
                if counted["n"] > cap:
                    return None
            [row] = await _rows(
                conn,
                f"SELECT count(*) AS n, count(*) FILTER (WHERE {match}) AS matched, "
                f"coalesce(sum(cost) FILTER (WHERE {match}), 0) AS cost FROM (SELECT id, prompt, cost {window}) AS w",
                (*match_params, *match_params, *params, cap + 1),
            )
            return None if row["n"] > cap else FilterTotal(int(row["matched"]), float(row["cost"]))

        return await self._db.run(read, idempotent=True)

    async def models(self, limit: int = 200) -> list[str]:
        rows = await self._read(
            "WITH RECURSIVE m(name, n) AS ("
            " SELECT (SELECT min(model) FROM jobs), 1"
            " UNION ALL SELECT (SELECT min(model) FROM jobs WHERE model > m.name), n + 1 FROM m"
            " WHERE m.name IS NOT NULL AND n < %s"
            ") SELECT name FROM m WHERE name IS NOT NULL",
            (limit,),
        )
        return [r["name"] for r in rows]

    async def timeline(self, job_id: str) -> list[TimelineEntry]:
        async def read(conn: Conn) -> list[TimelineEntry]:
            events = await _rows(
                conn,
                "SELECT at, source, kind, status, detail, delivery_id FROM job_events WHERE job_id = %s ORDER BY id",
                (job_id,),
            )
            deliveries = await _rows(
                conn, f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE job_id = %s ORDER BY id", (job_id,)
            )
            return timeline([TimelineEntry(**e) for e in events], [DeliveryRecord(**d) for d in deliveries])

        return await self._db.run(read, idempotent=True)

    async def polling(self, job_id: str) -> JobPolling | None:
        rows = await self._read("SELECT poll_attempts, next_poll_at FROM jobs WHERE id = %s", (job_id,))
        return JobPolling(**rows[0]) if rows else None

    async def outputs_needing_attention(self, limit: int) -> list[AttentionOutput]:
        rows = await self._read(
            'SELECT o.job_id, o.idx AS "index", o.state, o.attempts, o.error, o.updated_at, o.next_attempt_at, '
            f"j.model FROM (SELECT * FROM outputs WHERE {_ATTENTION} ORDER BY updated_at DESC LIMIT %s) AS o "
            "LEFT JOIN jobs AS j ON j.id = o.job_id ORDER BY o.updated_at DESC",
            (limit,),
        )
        return [AttentionOutput(**r) for r in rows]

    async def retry_output(self, job_id: str, index: int, *, who: str) -> str | None:
        now = time.time()

        async def retry(conn: Conn) -> str | None:
            rows = await _rows(
                conn,
                "SELECT state, error FROM outputs WHERE job_id = %s AND idx = %s FOR UPDATE",
                (job_id, index),
            )
            event = (
                plan_output_retry(index, rows[0]["state"], rows[0]["error"], now=now, who=who)
                if rows
                else None
            )
            if event is None:
                return None
            await conn.execute(
                "UPDATE outputs SET state = 'pending', attempts = 0, next_attempt_at = %(now)s, error = NULL, "
                "updated_at = %(now)s, claimed_by = NULL, lease_until = NULL WHERE job_id = %(job)s AND idx = %(idx)s",
                {"now": now, "job": job_id, "idx": index},
            )
            await insert_events(conn, job_id, (event,))
            await conn.execute("SELECT pg_notify('downloads', '')")  # delivered at commit, to every replica
            return str(rows[0]["state"])

        was = await self._db.transaction(retry)
        if was is not None:
            self._wakeups.jobs_changed()
        return was

    async def changes_since(self, token: ChangeToken | None, *, limit: int | None = CHANGES_LIMIT) -> Changes:
        return await self._db.run(lambda conn: changes_since(conn, token, limit), idempotent=True)

    async def last_delivery_at(self) -> float | None:
        rows = await self._read("SELECT received_at FROM deliveries ORDER BY id DESC LIMIT 1")
        return float(rows[0]["received_at"]) if rows else None
