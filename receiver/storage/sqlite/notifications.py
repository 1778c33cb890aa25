"""The notifications outbox in SQLite: written inside the transaction that ends a job (or stores its
last output), claimed by the notifier under a lease, listed and replayed by the API and the CLI.

`write_outbox` is called by the other writes of this backend, in their transaction, after the
change is stored; whether the change calls for a notification is `plan_notification`'s decision.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from openrouter_video import TERMINAL_STATUSES

from ...domain.model import Page
from ...domain.notifications import NOTIFICATION_STATES, JobEnd, NotificationRecord, plan_notification
from ...domain.pages import decode_cursor, encode_cursor

if TYPE_CHECKING:
    from ._file import SQLiteFile
    from .store import LocalWakeups

_SHOWN = (
    "id, job_id, event, url, owner, state, attempts, next_attempt_at, last_status, last_error, "
    "created_at, delivered_at"
)
_CLAIMED = "WHERE id = ? AND state = 'pending' AND claimed_by = ?"


def write_outbox(conn: sqlite3.Connection, job_id: str, now: float, default_url: str | None) -> bool:
    """In the caller's transaction: the notification the job's current state calls for, once per job
    end (the unique (job_id, event) keeps a replayed change from adding another). True if written."""
    row = conn.execute("SELECT status, notify_url, owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None or row["status"] not in TERMINAL_STATUSES:
        return False
    if row["notify_url"] is None and default_url is None:
        return False
    states = [r[0] for r in conn.execute("SELECT state FROM outputs WHERE job_id = ?", (job_id,))]
    end = JobEnd(job_id, row["status"], row["notify_url"], states, owner=row["owner"])
    new = plan_notification(end, default_url=default_url, now=now)
    if new is None:
        return False
    return bool(
        conn.execute(
            "INSERT OR IGNORE INTO notifications (id, job_id, event, url, owner, next_attempt_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new.id, new.job_id, new.event, new.url, new.owner, new.created_at, new.created_at),
        ).rowcount
    )


def _record(row: sqlite3.Row) -> NotificationRecord:
    return NotificationRecord(**dict(row))


def claim(
    conn: sqlite3.Connection, now: float, limit: int, worker: str, lease: float
) -> list[NotificationRecord]:
    rows = conn.execute(
        f"SELECT {_SHOWN} FROM notifications WHERE state = 'pending' AND next_attempt_at <= ? "
        "AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at LIMIT ?",
        (now, now, limit),
    ).fetchall()
    claimed = []
    for row in rows:
        conn.execute(
            "UPDATE notifications SET attempts = attempts + 1, claimed_by = ?, lease_until = ? WHERE id = ?",
            (worker, now + lease, row["id"]),
        )
        claimed.append(_record(row))
    return [dataclasses.replace(r, attempts=r.attempts + 1) for r in claimed]


def delivered(conn: sqlite3.Connection, notification_id: str, status: int, worker: str, now: float) -> bool:
    return bool(
        conn.execute(
            "UPDATE notifications SET state = 'delivered', last_status = ?, last_error = NULL, delivered_at = ?, "
            f"claimed_by = NULL, lease_until = NULL {_CLAIMED}",
            (status, now, notification_id, worker),
        ).rowcount
    )


def failed(
    conn: sqlite3.Connection,
    notification_id: str,
    status: int | None,
    error: str,
    next_at: float | None,
    worker: str,
) -> bool:
    state = "pending" if next_at is not None else "dead"
    return bool(
        conn.execute(
            "UPDATE notifications SET state = ?, last_status = ?, last_error = ?, "
            "next_attempt_at = coalesce(?, next_attempt_at), claimed_by = NULL, lease_until = NULL "
            f"{_CLAIMED}",
            (state, status, error[:500], next_at, notification_id, worker),
        ).rowcount
    )


def release_others(conn: sqlite3.Connection, worker: str, now: float) -> int:
    """Only for a store one process serves alone: a previous run's claims are known dead."""
    return conn.execute(
        "UPDATE notifications SET lease_until = ? WHERE state = 'pending' AND claimed_by IS NOT NULL "
        "AND claimed_by != ?",
        (now - 1, worker),
    ).rowcount


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT min(max(next_attempt_at, coalesce(lease_until, 0))) FROM notifications WHERE state = 'pending'"
    ).fetchone()
    return float(row[0]) if row[0] is not None else None


def get(conn: sqlite3.Connection, notification_id: str) -> NotificationRecord | None:
    row = conn.execute(f"SELECT {_SHOWN} FROM notifications WHERE id = ?", (notification_id,)).fetchone()
    return _record(row) if row else None


def page(
    conn: sqlite3.Connection, state: str | None, job_id: str | None, cursor: str | None, limit: int
) -> Page:
    if state is not None and state not in NOTIFICATION_STATES:
        raise ValueError(f"state must be one of {', '.join(NOTIFICATION_STATES)}")
    where: list[str] = []
    params: list[Any] = []
    for term, value in (("state = ?", state), ("job_id = ?", job_id)):
        if value is not None:
            where.append(term)
            params.append(value)
    if cursor:
        created_at, after = decode_cursor(cursor)
        where.append("(created_at, id) < (?, ?)")
        params += [created_at, after]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_SHOWN} FROM notifications {clause} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    items = [_record(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
    return Page(items, next_cursor)


def retry(conn: sqlite3.Connection, notification_ids: list[str] | None, now: float) -> list[str]:
    """Back to pending, due now, attempts reset; never one under a live claim (being sent)."""
    if notification_ids is None:
        rows = conn.execute("SELECT id FROM notifications WHERE state = 'dead'").fetchall()
    else:
        marks = ",".join("?" * len(notification_ids))
        rows = conn.execute(
            f"SELECT id FROM notifications WHERE id IN ({marks}) "
            "AND NOT (state = 'pending' AND lease_until IS NOT NULL AND lease_until >= ?)",
            (*notification_ids, now),
        ).fetchall()
    ids = [r[0] for r in rows]
    for notification_id in ids:
        conn.execute(
            "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = ?, delivered_at = NULL, "
            "claimed_by = NULL, lease_until = NULL WHERE id = ?",
            (now, notification_id),
        )
    return ids


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    found = {r[0]: r[1] for r in conn.execute("SELECT state, count(*) FROM notifications GROUP BY state")}
    return {state: int(found.get(state, 0)) for state in NOTIFICATION_STATES}


class SQLiteNotifications:
    def __init__(
        self, file: SQLiteFile, wakeups: LocalWakeups, *, worker: str, lease: float, exclusive: bool
    ) -> None:
        self._file = file
        self._wakeups = wakeups
        self.worker = worker
        self.lease = lease
        self.exclusive = exclusive

    async def claim(self, now: float, limit: int) -> list[NotificationRecord]:
        if (due := self._file.read_now(next_due)) is None or due > now:
            return []  # a read on the loop first: most wake-ups find nothing due, and skip a write
        return await self._file.write(claim, now, limit, self.worker, self.lease)

    async def delivered(self, notification_id: str, *, status: int) -> bool:
        return await self._file.write(delivered, notification_id, status, self.worker, time.time())

    async def failed(
        self, notification_id: str, *, status: int | None, error: str, next_at: float | None
    ) -> bool:
        return await self._file.write(failed, notification_id, status, error, next_at, self.worker)

    async def recover(self) -> int:
        if not self.exclusive:
            return 0
        return await self._file.write(release_others, self.worker, time.time())

    async def next_due(self) -> float | None:
        return self._file.read_now(next_due)

    async def get(self, notification_id: str) -> NotificationRecord | None:
        return self._file.read_now(get, notification_id)

    async def page(self, *, state: str | None, job_id: str | None, cursor: str | None, limit: int) -> Page:
        return self._file.read_now(page, state, job_id, cursor, limit)

    async def retry(self, notification_ids: list[str] | None) -> list[str]:
        ids = await self._file.write(retry, notification_ids, time.time())
        if ids:
            self._wakeups.notify("notifications")
        return ids

    async def counts(self) -> dict[str, int]:
        return await self._file.scan(counts)
