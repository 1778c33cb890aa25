"""Writing a copied store into PostgreSQL (`store migrate`): chunks of rows, each one INSERT ... SELECT
FROM unnest(...) ON CONFLICT DO NOTHING, so a row already there is skipped and counted as such."""

from __future__ import annotations

from typing import Any

from ._db import Conn

_DELIVERY_COLUMNS = (
    ("idempotency_key", "text"), ("job_id", "text"), ("event_type", "text"), ("status", "text"),
    ("received_at", "float8"), ("signed_at", "int8"), ("remote_addr", "text"), ("headers", "text"),
    ("body", "bytea"), ("state", "text"), ("error", "text"), ("applied_at", "float8"), ("replay_key", "bytea"),
    ("submission_id", "text"),
)  # fmt: skip
_JOB_COLUMNS = (
    ("id", "text"), ("model", "text"), ("prompt", "text"), ("status", "text"), ("created_at", "float8"),
    ("submitted_at", "float8"), ("first_seen_at", "float8"), ("updated_at", "float8"),
    ("terminal_at", "float8"), ("source", "text"), ("registered", "bool"), ("error", "text"),
    ("cost", "float8"), ("generation_id", "text"), ("next_poll_at", "float8"), ("poll_attempts", "int4"),
    ("upstream", "text"), ("owner", "text"), ("notify_url", "text"),
)  # fmt: skip
_EVENT_COLUMNS = (
    ("job_id", "text"), ("at", "float8"), ("source", "text"), ("kind", "text"), ("status", "text"),
    ("detail", "text"), ("delivery_id", "int8"),
)  # fmt: skip
_OUTPUT_COLUMNS = (
    ("job_id", "text"), ("idx", "int4"), ("state", "text"), ("attempts", "int4"), ("next_attempt_at", "float8"),
    ("bytes", "int8"), ("sha256", "text"), ("content_key", "text"), ("error", "text"), ("updated_at", "float8"),
)  # fmt: skip

_SUBMISSION_COLUMNS = (
    ("id", "text"), ("idempotency_key", "text"), ("fingerprint", "text"), ("state", "text"), ("model", "text"),
    ("prompt", "text"), ("job_id", "text"), ("upstream_status", "int4"), ("error", "text"),
    ("created_at", "float8"), ("updated_at", "float8"), ("estimated_cost", "float8"), ("owner", "text"),
    ("notify_url", "text"),
)  # fmt: skip
_TOKEN_COLUMNS = (
    ("name", "text"), ("role", "text"), ("token_hash", "text"), ("notify_secret", "text"),
    ("budget_usd_per_day", "float8"), ("budget_usd_per_month", "float8"), ("created_at", "float8"),
    ("revoked_at", "float8"), ("last_used_at", "float8"),
)  # fmt: skip
_NOTIFICATION_COLUMNS = (
    ("id", "text"), ("job_id", "text"), ("event", "text"), ("url", "text"), ("owner", "text"),
    ("state", "text"), ("attempts", "int4"), ("next_attempt_at", "float8"), ("last_status", "int4"),
    ("last_error", "text"), ("created_at", "float8"), ("delivered_at", "float8"),
)  # fmt: skip


def _insert(table: str, columns: tuple[tuple[str, str], ...], conflict: str, returning: str) -> str:
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"%({name})s::{kind}[]" for name, kind in columns)
    return (
        f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT {conflict} DO NOTHING RETURNING {returning}"
    )


def _arrays(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name, _ in columns}


async def insert_deliveries(conn: Conn, rows: list[dict[str, Any]]) -> tuple[int, dict[int, int]]:
    """Insert what is new (either key may match a stored one); (how many, old id -> id here for all)."""
    sql = _insert("deliveries", _DELIVERY_COLUMNS, "", "id")
    inserted = await (await conn.execute(sql, _arrays(rows, _DELIVERY_COLUMNS))).fetchall()
    found = await (
        await conn.execute(
            "SELECT id, idempotency_key FROM deliveries WHERE idempotency_key = ANY(%s)",
            ([row["idempotency_key"] for row in rows],),
        )
    ).fetchall()
    here = {r["idempotency_key"]: r["id"] for r in found}
    ids = {row["old_id"]: here[row["idempotency_key"]] for row in rows if row["idempotency_key"] in here}
    return len(inserted), ids


async def insert_jobs(conn: Conn, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the jobs not there yet; their ids."""
    sql = _insert("jobs", _JOB_COLUMNS, "(id)", "id")
    return {r["id"] for r in await (await conn.execute(sql, _arrays(rows, _JOB_COLUMNS))).fetchall()}


async def insert_events(conn: Conn, rows: list[dict[str, Any]]) -> int:
    sql = _insert("job_events", _EVENT_COLUMNS, "", "id")
    return len(await (await conn.execute(sql, _arrays(rows, _EVENT_COLUMNS))).fetchall())


async def insert_outputs(conn: Conn, rows: list[dict[str, Any]]) -> int:
    sql = _insert("outputs", _OUTPUT_COLUMNS, "(job_id, idx)", "state")
    return len(await (await conn.execute(sql, _arrays(rows, _OUTPUT_COLUMNS))).fetchall())


async def insert_submissions(conn: Conn, rows: list[dict[str, Any]]) -> int:
    """Insert the submissions not there yet (by id or by idempotency key); how many."""
    sql = _insert("submissions", _SUBMISSION_COLUMNS, "", "id")
    return len(await (await conn.execute(sql, _arrays(rows, _SUBMISSION_COLUMNS))).fetchall())


async def insert_tokens(conn: Conn, rows: list[dict[str, Any]]) -> int:
    """Insert the tokens not there yet (by name or by hash); how many."""
    sql = _insert("tokens", _TOKEN_COLUMNS, "", "name")
    return len(await (await conn.execute(sql, _arrays(rows, _TOKEN_COLUMNS))).fetchall())


async def insert_notifications(conn: Conn, rows: list[dict[str, Any]]) -> int:
    """Insert the notifications not there yet (by id, or the same job end told already); how many."""
    sql = _insert("notifications", _NOTIFICATION_COLUMNS, "", "id")
    return len(await (await conn.execute(sql, _arrays(rows, _NOTIFICATION_COLUMNS))).fetchall())


async def wake(conn: Conn, *, deliveries: bool, downloads: bool, notifications: bool = False) -> None:
    """Tell running replicas (at commit) that copied work waits: pending deliveries, queued outputs,
    pending notifications."""
    for topic, waiting in (
        ("deliveries", deliveries),
        ("downloads", downloads),
        ("notifications", notifications),
    ):
        if waiting:
            await conn.execute("SELECT pg_notify(%s, '')", (topic,))
