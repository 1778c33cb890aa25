"""The dashboard's store (storage.base.Dashboard) on SQLite: its reads, bounded at a million jobs and
more, and its one write (an operator's retry of a download) through the file's single writer.

Short indexed reads run on the loop's read connection; the reads that may touch up to a window of
jobs (a search, a filter's total) run on the scan thread, so they never pause the webhook path.
The decisions (cursors, timeline, what a retry changes) are receiver.domain.dashboard's.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ...domain.dashboard import jobs_page, like_patterns, plan_output_retry, timeline
from ...domain.model import (
    CHANGES_LIMIT,
    CHANGES_READ,
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
from ._file import SQLiteFile
from .deliveries import SHOWN as DELIVERY_COLUMNS
from .jobs import JOB_COLUMNS, add_event, job_record
from .store import LocalWakeups

# A prompt substring (LIKE: case-insensitive for ASCII) or a job id prefix.
_MATCH = "(prompt LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\')"
_NEWEST_FIRST, _OLDEST_FIRST = "created_at DESC, id DESC", "created_at ASC, id ASC"


def _where(filters: JobFilter) -> tuple[str, list[Any]]:
    where, params = filter_terms(filters, "?")
    return (f"WHERE {' AND '.join(where)}" if where else ""), params


def page_jobs(conn: sqlite3.Connection, search: JobSearch) -> JobSearchPage:
    """See Dashboard.jobs_page. Every page is one walk of the index that orders the listing."""
    clause, params = _where(search.filters)
    if search.cursor:
        created_at, job_id = decode_cursor(search.cursor)
        keyset = "(created_at, id) > (?, ?)" if search.newer else "(created_at, id) < (?, ?)"
        clause = f"{clause} AND {keyset}" if clause else f"WHERE {keyset}"
        params += [created_at, job_id]
    order = _OLDEST_FIRST if search.newer else _NEWEST_FIRST
    limit, edge = search.limit, None
    if search.text:
        # The window is read lazily (in index order): the scan stops at limit + 1 matches.
        rows = conn.execute(
            f"SELECT * FROM (SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY {order} LIMIT ?) "
            f"WHERE {_MATCH} LIMIT ?",
            (*params, search.window, *like_patterns(search.text), limit + 1),
        ).fetchall()
        if len(rows) <= limit:  # too few: did the window end before the jobs did? Then say where.
            # The window's last job: (created_at, id) only, which the index holds (no job row is read).
            last = conn.execute(
                f"SELECT created_at, id FROM jobs {clause} ORDER BY {order} LIMIT 1 OFFSET ?",
                (*params, search.window - 1),
            ).fetchone()
            edge = (last["created_at"], last["id"]) if last else None
    else:
        rows = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY {order} LIMIT ?", (*params, limit + 1)
        ).fetchall()
        if search.newer and len(rows) <= limit:  # fewer than a page is newer: that is the first page
            return page_jobs(conn, JobSearch(search.filters, limit=limit))
    return jobs_page([job_record(r) for r in rows], search, edge)


def filter_total(
    conn: sqlite3.Connection, filters: JobFilter, text: str | None, cap: int
) -> FilterTotal | None:
    """See Dashboard.filter_total."""
    clause, params = _where(filters)
    match_params = list(like_patterns(text)) if text else []
    match = _MATCH if text else "1"
    if not (filters.status and filters.model):
        # Count up to the cap first, through the index that orders the listing: no row is read (the
        # filters are all in that index), so a filter over the cap costs an index walk and no more.
        counted = conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM jobs {clause} ORDER BY {_NEWEST_FIRST} LIMIT ?)",
            (*params, cap + 1),
        ).fetchone()[0]
        if counted > cap:
            return None
    # One pass over at most cap + 1 jobs (status and model together are in no single index: the rows
    # are read anyway, so counting and adding up go together).
    row = conn.execute(
        f"SELECT count(*), sum({match}), total(CASE WHEN {match} THEN cost END) FROM "
        f"(SELECT id, prompt, cost FROM jobs {clause} ORDER BY {_NEWEST_FIRST} LIMIT ?)",
        (*match_params, *match_params, *params, cap + 1),
    ).fetchone()
    if row[0] > cap:
        return None
    return FilterTotal(int(row[1] or 0), float(row[2]))


def models(conn: sqlite3.Connection, limit: int) -> list[str]:
    """The model names, by skipping through the model index (one seek per name, not a scan)."""
    rows = conn.execute(
        "WITH RECURSIVE m(name, n) AS ("
        " SELECT (SELECT min(model) FROM jobs), 1"
        " UNION ALL SELECT (SELECT min(model) FROM jobs WHERE model > m.name), n + 1 FROM m"
        " WHERE m.name IS NOT NULL AND n < ?"
        ") SELECT name FROM m WHERE name IS NOT NULL",
        (limit,),
    ).fetchall()
    return [r[0] for r in rows]


def job_timeline(conn: sqlite3.Connection, job_id: str) -> list[TimelineEntry]:
    events = [
        TimelineEntry(**dict(r))
        for r in conn.execute(
            "SELECT at, source, kind, status, detail, delivery_id FROM job_events WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
    ]
    deliveries = [
        DeliveryRecord(**dict(r))
        for r in conn.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE job_id = ? ORDER BY id", (job_id,)
        )
    ]
    return timeline(events, deliveries)


def job_polling(conn: sqlite3.Connection, job_id: str) -> JobPolling | None:
    row = conn.execute("SELECT poll_attempts, next_poll_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return JobPolling(**dict(row)) if row else None


def outputs_needing_attention(conn: sqlite3.Connection, limit: int) -> list[AttentionOutput]:
    """Each state through the outputs_due index (state first), then the few found sorted."""
    rows = conn.execute(
        'SELECT o.job_id, o.idx AS "index", o.state, o.attempts, o.error, o.updated_at, o.next_attempt_at, '
        "j.model FROM outputs o LEFT JOIN jobs j ON j.id = o.job_id "
        "WHERE o.rowid IN (SELECT rowid FROM outputs WHERE state IN ('failed', 'gone') "
        "UNION ALL SELECT rowid FROM outputs WHERE state = 'pending' AND error IS NOT NULL) "
        "ORDER BY o.updated_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [AttentionOutput(**dict(r)) for r in rows]


def retry_output(conn: sqlite3.Connection, job_id: str, index: int, now: float, who: str) -> str | None:
    """See Dashboard.retry_output; in the writer's transaction."""
    row = conn.execute(
        "SELECT state, error FROM outputs WHERE job_id = ? AND idx = ?", (job_id, index)
    ).fetchone()
    event = plan_output_retry(index, row["state"], row["error"], now=now, who=who) if row else None
    if event is None:
        return None
    conn.execute(
        "UPDATE outputs SET state = 'pending', attempts = 0, next_attempt_at = ?, error = NULL, updated_at = ?, "
        "claimed_by = NULL, lease_until = NULL WHERE job_id = ? AND idx = ?",
        (now, now, job_id, index),
    )
    add_event(conn, job_id, event.at, event.source, event.kind, event.status, event.detail)
    return str(row["state"])


def changes_since(conn: sqlite3.Connection, token: ChangeToken | None, limit: int | None) -> Changes:
    """One writer commits ids in order here: the newest ids seen are the whole token (two primary-key
    lookups while nothing changed). A look reads at most CHANGES_READ events; the token then stands at
    the last one read and the next look goes on from there."""
    row = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM job_events), (SELECT coalesce(max(id), 0) FROM deliveries)"
    ).fetchone()
    now = ChangeToken(int(row[0]), int(row[1]))
    if token is None or now == token:
        return Changes(now)
    rows = conn.execute(
        "SELECT id, job_id FROM job_events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (token.events, now.events, CHANGES_READ),
    ).fetchall()
    events = rows[-1][0] if len(rows) == CHANGES_READ else now.events
    jobs = list(dict.fromkeys(r[1] for r in rows))  # distinct, in the order they changed
    listed = jobs if limit is None else jobs[:limit]
    return Changes(
        ChangeToken(events, now.deliveries),
        tuple(listed),
        all=len(listed) < len(jobs),  # more changed than listed: the pages reload everything
        deliveries=now.deliveries != token.deliveries,
    )


def last_delivery_at(conn: sqlite3.Connection) -> float | None:
    """Ids grow with time: one index step."""
    row = conn.execute("SELECT received_at FROM deliveries ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else None


class SQLiteDashboard:
    def __init__(self, file: SQLiteFile, wakeups: LocalWakeups) -> None:
        self._file = file
        self._wakeups = wakeups

    async def jobs_page(self, search: JobSearch) -> JobSearchPage:
        if search.text:
            return await self._file.scan(page_jobs, search)
        return self._file.read_now(page_jobs, search)

    async def filter_total(self, filters: JobFilter, text: str | None, *, cap: int) -> FilterTotal | None:
        return await self._file.scan(filter_total, filters, text, cap)

    async def models(self, limit: int = 200) -> list[str]:
        return self._file.read_now(models, limit)

    async def timeline(self, job_id: str) -> list[TimelineEntry]:
        return self._file.read_now(job_timeline, job_id)

    async def polling(self, job_id: str) -> JobPolling | None:
        return self._file.read_now(job_polling, job_id)

    async def outputs_needing_attention(self, limit: int) -> list[AttentionOutput]:
        return self._file.read_now(outputs_needing_attention, limit)

    async def retry_output(self, job_id: str, index: int, *, who: str) -> str | None:
        was = await self._file.write(retry_output, job_id, index, time.time(), who)
        if was is not None:
            self._wakeups.notify("downloads")
            self._wakeups.notify("jobs")
        return was

    async def changes_since(self, token: ChangeToken | None, *, limit: int | None = CHANGES_LIMIT) -> Changes:
        return self._file.read_now(changes_since, token, limit)

    async def last_delivery_at(self) -> float | None:
        return self._file.read_now(last_delivery_at)
