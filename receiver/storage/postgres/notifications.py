"""The notifications outbox on PostgreSQL (SQLite's twin: receiver/storage/sqlite/notifications.py).

`write_outbox` runs inside the transaction that changed the job, under the job's lock (every caller
holds it: two outputs of one job stored on two replicas are serialized, so the second sees the first
done and exactly one of them writes the notification). Due rows are claimed with `FOR UPDATE SKIP
LOCKED` and marked with this worker's id and a lease, as downloads are (queues.py); only the
claimant records an attempt's outcome.
"""

from __future__ import annotations

import time
from typing import Any

from openrouter_video import TERMINAL_STATUSES

from ...domain.model import Page
from ...domain.notifications import NOTIFICATION_STATES, JobEnd, NotificationRecord, plan_notification
from ...domain.pages import decode_cursor, encode_cursor
from ._db import Conn, Database
from .wakeups import Wakeups

_SHOWN = (
    "id, job_id, event, url, owner, state, attempts, next_attempt_at, last_status, last_error, "
    "created_at, delivered_at"
)
_CLAIMED = "id = %(id)s AND state = 'pending' AND claimed_by = %(worker)s"
_CLAIM = (
    "WITH due AS (SELECT id FROM notifications WHERE state = 'pending' AND next_attempt_at <= %(now)s "
    "AND (lease_until IS NULL OR lease_until < %(now)s) ORDER BY next_attempt_at LIMIT %(limit)s "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE notifications AS n SET attempts = n.attempts + 1, claimed_by = %(worker)s, lease_until = %(until)s "
    f"FROM due WHERE n.id = due.id RETURNING {', '.join('n.' + c for c in _SHOWN.split(', '))}"
)


async def write_outbox(conn: Conn, job_id: str, now: float, default_url: str | None) -> bool:
    """In the caller's transaction (the job's lock held): the notification the job's state calls for,
    once per job end. True if written (the NOTIFY goes out at commit, when the row is there)."""
    job = await (
        await conn.execute("SELECT status, notify_url, owner FROM jobs WHERE id = %s", (job_id,))
    ).fetchone()
    if job is None or job["status"] not in TERMINAL_STATUSES:
        return False
    if job["notify_url"] is None and default_url is None:
        return False
    rows = await (await conn.execute("SELECT state FROM outputs WHERE job_id = %s", (job_id,))).fetchall()
    end = JobEnd(job_id, job["status"], job["notify_url"], [r["state"] for r in rows], job["owner"])
    new = plan_notification(end, default_url=default_url, now=now)
    if new is None:
        return False
    written = await (
        await conn.execute(
            "INSERT INTO notifications (id, job_id, event, url, owner, next_attempt_at, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (job_id, event) DO NOTHING RETURNING id",
            (new.id, new.job_id, new.event, new.url, new.owner, new.created_at, new.created_at),
        )
    ).fetchone()
    if written is not None:
        await conn.execute("SELECT pg_notify('notifications', '')")
    return written is not None


class Notifications:
    def __init__(self, db: Database, wakeups: Wakeups, *, worker: str, lease: float) -> None:
        self._db = db
        self._wakeups = wakeups
        self.worker = worker
        self.lease = lease

    async def claim(self, now: float, limit: int) -> list[NotificationRecord]:
        params = {"now": now, "limit": limit, "worker": self.worker, "until": now + self.lease}

        async def claim(conn: Conn) -> list[NotificationRecord]:
            rows = await (await conn.execute(_CLAIM, params)).fetchall()
            rows.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
            return [NotificationRecord(**row) for row in rows]

        return await self._db.run(claim)

    async def delivered(self, notification_id: str, *, status: int) -> bool:
        params = {"id": notification_id, "worker": self.worker, "status": status, "now": time.time()}
        return await self._write(
            "UPDATE notifications SET state = 'delivered', last_status = %(status)s, last_error = NULL, "
            f"delivered_at = %(now)s, claimed_by = NULL, lease_until = NULL WHERE {_CLAIMED}",
            params,
        )

    async def failed(
        self, notification_id: str, *, status: int | None, error: str, next_at: float | None
    ) -> bool:
        params = {
            "id": notification_id,
            "worker": self.worker,
            "status": status,
            "error": error[:500],
            "next_at": next_at,
            "state": "pending" if next_at is not None else "dead",
        }
        return await self._write(
            "UPDATE notifications SET state = %(state)s, last_status = %(status)s, last_error = %(error)s, "
            "next_attempt_at = coalesce(%(next_at)s, next_attempt_at), claimed_by = NULL, lease_until = NULL "
            f"WHERE {_CLAIMED}",
            params,
        )

    async def _write(self, sql: str, params: dict[str, Any]) -> bool:
        async def write(conn: Conn) -> bool:
            return (await conn.execute(sql, params)).rowcount > 0

        return await self._db.run(write)

    async def recover(self) -> int:
        return 0  # replicas: a claim is known dead only when its lease runs out

    async def next_due(self) -> float | None:
        async def read(conn: Conn) -> float | None:
            row = await (
                await conn.execute(
                    "SELECT min(greatest(next_attempt_at, coalesce(lease_until, 0))) AS due "
                    "FROM notifications WHERE state = 'pending'"
                )
            ).fetchone()
            return row["due"] if row else None

        return await self._db.run(read, idempotent=True)

    async def get(self, notification_id: str) -> NotificationRecord | None:
        async def read(conn: Conn) -> dict[str, Any] | None:
            sql = f"SELECT {_SHOWN} FROM notifications WHERE id = %s"
            return await (await conn.execute(sql, (notification_id,))).fetchone()

        row = await self._db.run(read, idempotent=True)
        return NotificationRecord(**row) if row else None

    async def page(self, *, state: str | None, job_id: str | None, cursor: str | None, limit: int) -> Page:
        if state is not None and state not in NOTIFICATION_STATES:
            raise ValueError(f"state must be one of {', '.join(NOTIFICATION_STATES)}")
        where: list[str] = []
        params: list[Any] = []
        for term, value in (("state = %s", state), ("job_id = %s", job_id)):
            if value is not None:
                where.append(term)
                params.append(value)
        if cursor:
            created_at, after = decode_cursor(cursor)
            where.append("(created_at, id) < (%s, %s)")
            params += [created_at, after]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_SHOWN} FROM notifications {clause} ORDER BY created_at DESC, id DESC LIMIT %s"

        async def read(conn: Conn) -> list[dict[str, Any]]:
            return await (await conn.execute(sql, (*params, limit + 1))).fetchall()

        rows = await self._db.run(read, idempotent=True)
        items = [NotificationRecord(**row) for row in rows[:limit]]
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return Page(items, next_cursor)

    async def retry(self, notification_ids: list[str] | None) -> list[str]:
        now = time.time()
        params: dict[str, Any] = {"now": now, "ids": notification_ids}
        if notification_ids is None:
            which = "state = 'dead'"
        else:  # never one under a live claim (being sent right now)
            which = (
                "id = ANY(%(ids)s) AND NOT (state = 'pending' AND lease_until IS NOT NULL "
                "AND lease_until >= %(now)s)"
            )

        async def retry(conn: Conn) -> list[str]:
            rows = await (
                await conn.execute(
                    "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = %(now)s, "
                    f"delivered_at = NULL, claimed_by = NULL, lease_until = NULL WHERE {which} RETURNING id",
                    params,
                )
            ).fetchall()
            if rows:
                await conn.execute("SELECT pg_notify('notifications', '')")  # every replica's notifier
            return [row["id"] for row in rows]

        ids = await self._db.transaction(retry)
        if ids:
            self._wakeups.notify("notifications")
        return ids

    async def counts(self) -> dict[str, int]:
        async def read(conn: Conn) -> dict[str, int]:
            rows = await (
                await conn.execute("SELECT state, count(*) AS n FROM notifications GROUP BY state")
            ).fetchall()
            return {r["state"]: int(r["n"]) for r in rows}

        found = await self._db.run(read, idempotent=True)
        return {state: found.get(state, 0) for state in NOTIFICATION_STATES}
