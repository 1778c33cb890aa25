"""Jobs in SQLite as plain functions over a connection: read the current state, store a decided change.

Writes run inside a transaction opened by the caller (the single writer, or a CLI command), so each
function is atomic with whatever else that transaction holds. The decisions are receiver.domain's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

import sqlite_utils

from openrouter_video import VideoJob

from ...domain.model import ApplyResult, EventRecord, JobFilter, JobRecord, OutputRecord, Page
from ...domain.pages import decode_cursor, encode_cursor, filter_terms
from ...domain.plan import (
    JOB_STATE_COLUMNS,
    JobChange,
    JobState,
    plan_job_update,
    plan_not_found_upstream,
    plan_registration,
)
from .notifications import write_outbox

JOB_COLUMNS = (
    "id, model, prompt, status, created_at, submitted_at, first_seen_at, updated_at, terminal_at, "
    "source, registered, error, cost, generation_id, owner"
)
_STATE_SQL = f"SELECT {', '.join(JOB_STATE_COLUMNS)} FROM jobs WHERE id = ?"


# -- storing decided changes -------------------------------------------------------------------


def read_state(conn: sqlite3.Connection, job_id: str, *, outputs: bool = True) -> JobState | None:
    """The job's current state as the decisions take it (None: no such job)."""
    row = conn.execute(_STATE_SQL, (job_id,)).fetchone()
    if row is None:
        return None
    values = dict(row)
    values["registered"] = bool(values["registered"])
    values["upstream"] = json.loads(values["upstream"]) if values["upstream"] else None
    known: frozenset[int] = frozenset()
    if outputs:
        known = frozenset(r[0] for r in conn.execute("SELECT idx FROM outputs WHERE job_id = ?", (job_id,)))
    return JobState(**values, outputs=known)


def _column_value(name: str, value: Any) -> Any:
    return json.dumps(value) if name == "upstream" and value is not None else value


def store_change(conn: sqlite3.Connection, change: JobChange) -> None:
    """Store a decided change as it is: no decision here."""
    if change.create is not None:
        names = list(change.create)
        conn.execute(
            f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [_column_value(n, change.create[n]) for n in names],
        )
    elif change.update:
        names = list(change.update)
        conn.execute(
            f"UPDATE jobs SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
            [*(_column_value(n, change.update[n]) for n in names), change.job_id],
        )
    for event in change.events:
        add_event(
            conn,
            change.job_id,
            event.at,
            event.source,
            event.kind,
            event.status,
            event.detail,
            event.delivery_id,
        )
    for index in change.queue_outputs:
        conn.execute(
            "INSERT OR IGNORE INTO outputs (job_id, idx, state, next_attempt_at, updated_at) "
            "VALUES (?, ?, 'pending', ?, ?)",
            (change.job_id, index, change.outputs_at, change.outputs_at),
        )


def add_event(
    conn: sqlite3.Connection,
    job_id: str,
    at: float,
    source: str,
    kind: str,
    status: str | None = None,
    detail: str | None = None,
    delivery_id: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO job_events (job_id, at, source, kind, status, detail, delivery_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job_id, at, source, kind, status, detail, delivery_id),
    )


# -- writes ------------------------------------------------------------------------------------


def apply_job_update(
    conn: sqlite3.Connection, job: VideoJob, *, source: str, now: float, delivery_id: int | None = None
) -> ApplyResult:
    """Move the job record forward by an upstream view of the job (webhook or poll)."""
    change = plan_job_update(read_state(conn, job.id), job, source=source, now=now, delivery_id=delivery_id)
    store_change(conn, change)
    assert change.result is not None  # an upstream view always has one
    return change.result


def apply_poll(
    conn: sqlite3.Connection, job: VideoJob, *, now: float, notify_default: str | None
) -> ApplyResult:
    """A fallback poll's answer applied, and the notification it may call for (one transaction)."""
    result = apply_job_update(conn, job, source="poll", now=now)
    write_outbox(conn, job.id, now, notify_default)
    return result


def register_job(
    conn: sqlite3.Connection,
    job_id: str,
    *,
    model: str | None,
    prompt: str | None,
    now: float,
    first_poll_at: float,
    owner: str | None = None,
    notify_url: str | None = None,
    notify_default: str | None = None,
) -> bool:
    """Track a submitted job; idempotent, and fine whether its webhook came first or not. True if new.
    A job that already ended is told now, if it now has somewhere to be told."""
    current = read_state(conn, job_id, outputs=False)
    change = plan_registration(
        current,
        job_id,
        model=model,
        prompt=prompt,
        now=now,
        first_poll_at=first_poll_at,
        owner=owner,
        notify_url=notify_url,
    )
    store_change(conn, change)
    write_outbox(conn, job_id, now, notify_default)
    return change.created


def mark_not_found_upstream(conn: sqlite3.Connection, job_id: str, now: float, detail: str) -> None:
    """The fallback's end for a job upstream does not know (see plan_not_found_upstream)."""
    current = read_state(conn, job_id, outputs=False)
    store_change(conn, plan_not_found_upstream(current, job_id, detail=detail, now=now))


def delete_jobs(conn: sqlite3.Connection, job_ids: list[str]) -> list[str]:
    """Delete job records with their events and outputs; the content keys they held."""
    keys: list[str] = []
    for job_id in job_ids:
        keys += [
            r[0]
            for r in conn.execute(
                "SELECT content_key FROM outputs WHERE job_id = ? AND content_key IS NOT NULL", (job_id,)
            )
        ]
        conn.execute("DELETE FROM outputs WHERE job_id = ?", (job_id,))
        conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
        conn.execute("DELETE FROM notifications WHERE job_id = ?", (job_id,))
        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
    return keys


def delete_job(conn: sqlite3.Connection, job_id: str) -> list[str] | None:
    """Delete a job record, its events and outputs; the content keys it held (None: no such job)."""
    if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
        return None
    return delete_jobs(conn, [job_id])


# -- reads -------------------------------------------------------------------------------------


def job_record(row: sqlite3.Row | Mapping[str, Any], **more: Any) -> JobRecord:
    values = dict(row)
    values["registered"] = bool(values["registered"])
    return JobRecord(**values, **more)


def get_job(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    outputs = tuple(
        OutputRecord(**dict(r))
        for r in conn.execute(
            'SELECT idx AS "index", state, attempts, bytes, sha256, error, updated_at, content_key '
            "FROM outputs WHERE job_id = ? ORDER BY idx",
            (job_id,),
        )
    )
    events = tuple(
        EventRecord(**dict(r))
        for r in conn.execute(
            "SELECT at, source, kind, status, detail FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
        )
    )
    return job_record(row, outputs=outputs, events=events)


def jobs_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: r[1] for r in conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")}


def page_jobs(conn: sqlite3.Connection, filters: JobFilter, *, cursor: str | None, limit: int) -> Page:
    """Newest first, keyset pagination on (created_at, id); a cursor not returned here: ValueError."""
    where, params = filter_terms(filters, "?")
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        where.append("(created_at, id) < (?, ?)")
        params += [created_at, job_id]
    # sqlite-utils builds the SELECT and yields plain dicts; the keyset terms stay ours (it has none).
    rows = list(
        sqlite_utils.Database(conn, recursive_triggers=False)["jobs"].rows_where(
            " AND ".join(where) or None,
            params,
            select=JOB_COLUMNS,
            order_by="created_at DESC, id DESC",
            limit=limit + 1,
        )
    )
    jobs = [job_record(r) for r in rows[:limit]]
    next_cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(rows) > limit else None
    return Page(jobs, next_cursor)
