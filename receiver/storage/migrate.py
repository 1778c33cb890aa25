"""`openrouter-video store migrate`: copy a SQLite store into PostgreSQL, idempotently.

Copies deliveries, jobs, their events and outputs (the download queue), submissions, named API
tokens (their hashes; a token keeps working after the move) and the notifications outbox in one
PostgreSQL transaction:
all of it or nothing. Running it again copies nothing twice: a delivery already there (same
idempotency key, or same replay key) is skipped, a job already there is skipped with its events
(events have no key of their own: they come with their job, once), an output already there is
skipped. It answers what it copied and what was already there, per table.

The SQLite file is opened read-only and never migrated: whichever of its schema versions it has, the
columns it lacks are filled as SQLite's own migrations would (an old `outputs.path` the local store
wrote becomes the content key `<job_id>/<index>.mp4` it ends in; `processed` becomes the delivery
state). Claims are
not copied: a download the SQLite receiver had in flight is pending again, due now. The videos
themselves are not copied: they stay in the content store (move the local folder to the new
content store separately).
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

CHUNK = 500
TABLES = ("deliveries", "jobs", "job_events", "outputs", "submissions", "tokens", "notifications")


class MigrateError(Exception):
    """The source or the target cannot be used (one line for the user)."""


@dataclass
class Copied:
    """Rows copied and rows found already there, per table."""

    copied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    present: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    paths_converted: int = 0  # old `outputs.path` turned into content keys

    def summary(self) -> str:
        copied = ", ".join(f"{self.copied[t]} {t}" for t in TABLES)
        present = ", ".join(f"{self.present[t]} {t}" for t in TABLES)
        return f"copied: {copied}; already there (skipped): {present}"


def sqlite_path(url: str) -> str:
    """`sqlite:///abs/path/receiver.db` (or SQLAlchemy's `sqlite:////abs/path`, or a plain path) ->
    the file's path. Leading slashes collapse to one: POSIX keeps `//x` apart from `/x`, and a
    `file://x` URI would read `x` as a host."""
    path = url[len("sqlite://") :] if url.startswith("sqlite://") else url
    if path.startswith("/"):
        path = "/" + path.lstrip("/")
    if not path or path == "/":
        raise MigrateError(f"no SQLite file in {url!r} (expected sqlite:///path/to/receiver.db)")
    return os.path.normpath(path)


def open_source(path: str) -> sqlite3.Connection:
    """The SQLite file, read-only (never migrated, never written)."""
    if not os.path.isfile(path):
        raise MigrateError(f"no SQLite database at {path}")
    try:
        # as_uri() percent-encodes: a '?', '#' or '%' in a directory name stays part of the path
        conn = sqlite3.connect(pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only = ON")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise MigrateError(f"cannot read {path}: {exc}") from None
    missing = {"deliveries", "jobs", "job_events", "outputs"} - tables
    if missing:
        conn.close()
        raise MigrateError(f"{path} is not a receiver database (no {', '.join(sorted(missing))} table)")
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _chunks(cursor: sqlite3.Cursor) -> Iterator[list[dict[str, Any]]]:
    while rows := cursor.fetchmany(CHUNK):
        yield [dict(row) for row in rows]


def read_deliveries(conn: sqlite3.Connection) -> Iterator[list[dict[str, Any]]]:
    columns = _columns(conn, "deliveries")
    for rows in _chunks(conn.execute("SELECT * FROM deliveries ORDER BY id")):
        out = []
        for r in rows:
            if "state" in columns:
                state, applied_at = r["state"], r["applied_at"]
            else:  # schema 1: processed 0/1, as SQLite's migration 2 maps it
                state, applied_at = ("applied" if r["processed"] else "failed"), r["received_at"]
            replay = r.get("replay_key")
            out.append(
                {
                    "old_id": r["id"],
                    "idempotency_key": r["idempotency_key"],
                    "job_id": r["job_id"],
                    "event_type": r["event_type"],
                    "status": r["status"],
                    "received_at": r["received_at"],
                    "signed_at": r["signed_at"],
                    "remote_addr": r["remote_addr"],
                    "headers": r["headers"],
                    "body": bytes(r["body"]) if r["body"] is not None else b"",
                    "state": state,
                    "error": r["error"],
                    "applied_at": applied_at,
                    "replay_key": (replay.encode() if isinstance(replay, str) else replay),
                    "submission_id": r.get("submission_id"),  # schema 6 on
                }
            )
        yield out


_JOB_COLUMNS = (
    "id", "model", "prompt", "status", "created_at", "submitted_at", "first_seen_at", "updated_at",
    "terminal_at", "source", "registered", "error", "cost", "generation_id", "next_poll_at",
    "poll_attempts", "upstream",
)  # fmt: skip


def read_jobs(conn: sqlite3.Connection) -> Iterator[list[dict[str, Any]]]:
    for rows in _chunks(conn.execute("SELECT * FROM jobs ORDER BY rowid")):
        out = []
        for r in rows:
            job = {name: r[name] for name in _JOB_COLUMNS}
            job["registered"] = bool(job["registered"])
            job["owner"] = r.get("owner")  # schema 8 on
            job["notify_url"] = r.get("notify_url")  # schema 9 on
            out.append(job)
        yield out


def read_events(conn: sqlite3.Connection) -> Iterator[list[dict[str, Any]]]:
    yield from _chunks(conn.execute("SELECT * FROM job_events ORDER BY id"))


def read_outputs(conn: sqlite3.Connection, now: float) -> Iterator[list[dict[str, Any]]]:
    """Outputs as the download queue: a claim in flight is pending again (due now); `path` -> key."""
    columns = _columns(conn, "outputs")
    for rows in _chunks(conn.execute("SELECT * FROM outputs ORDER BY job_id, idx")):
        out = []
        for r in rows:
            key = r.get("content_key")
            converted = False
            if key is None and "path" in columns and r["path"]:
                # As SQLite's migration 5: a path the local store wrote ends in its key.
                candidate = f"{r['job_id']}/{r['idx']}.mp4"
                if r["path"].endswith("/" + candidate):
                    key, converted = candidate, True
            state = r["state"]
            in_flight = state == "downloading"
            out.append(
                {
                    "job_id": r["job_id"],
                    "idx": r["idx"],
                    "state": "pending" if in_flight else state,
                    "attempts": r["attempts"],
                    "next_attempt_at": now if in_flight else r["next_attempt_at"],
                    "bytes": r["bytes"],
                    "sha256": r["sha256"],
                    "content_key": key,
                    "error": r["error"],
                    "updated_at": r["updated_at"],
                    "converted": converted,
                }
            )
        yield out


_SUBMISSION_COLUMNS = (
    "id", "idempotency_key", "fingerprint", "state", "model", "prompt", "job_id", "upstream_status",
    "error", "created_at", "updated_at", "estimated_cost", "owner", "notify_url",
)  # fmt: skip


def read_submissions(conn: sqlite3.Connection) -> Iterator[list[dict[str, Any]]]:
    """Submits made through the receiver (schema 6 on). One still `submitting` is copied as it is:
    PostgreSQL's start-up rule makes it `outcome_unknown` once nobody can still be calling."""
    if "id" not in _columns(conn, "submissions"):
        return
    for rows in _chunks(conn.execute("SELECT * FROM submissions ORDER BY created_at, id")):
        # estimated_cost: schema 7 on, owner 8 on, notify_url 9 on (older stores' submissions lack them)
        yield [{name: r.get(name) for name in _SUBMISSION_COLUMNS} for r in rows]


def read_tokens(conn: sqlite3.Connection) -> Iterator[list[dict[str, Any]]]:
    """Named API tokens (schema 8 on): their hashes and notification secrets, revoked ones too."""
    if "name" not in _columns(conn, "tokens"):
        return
    yield from _chunks(conn.execute("SELECT * FROM tokens ORDER BY name"))


_NOTIFICATION_COLUMNS = (
    "id", "job_id", "event", "url", "owner", "state", "attempts", "next_attempt_at", "last_status",
    "last_error", "created_at", "delivered_at",
)  # fmt: skip


def read_notifications(conn: sqlite3.Connection) -> Iterator[list[dict[str, Any]]]:
    """The outbox (schema 9 on). Claims are not copied: one being sent is pending again as it was."""
    if "id" not in _columns(conn, "notifications"):
        return
    for rows in _chunks(conn.execute("SELECT * FROM notifications ORDER BY created_at, id")):
        yield [{name: r[name] for name in _NOTIFICATION_COLUMNS} for r in rows]


async def copy_store(source: sqlite3.Connection, target_url: str, *, now: float | None = None) -> Copied:
    """Migrate the PostgreSQL schema, then copy `source` into it in one transaction."""
    import psycopg
    from psycopg.rows import dict_row

    from .postgres import copy
    from .postgres._db import Conn, register_text_guard
    from .postgres.schema import migrate

    now = time.time() if now is None else now
    result = Copied()
    try:
        conn = await Conn.connect(target_url, autocommit=True, row_factory=dict_row, connect_timeout=10)
    except psycopg.Error as exc:
        raise MigrateError(f"cannot connect to the target: {str(exc).strip().splitlines()[0]}") from None
    try:
        register_text_guard(conn)
        await migrate(conn)
        async with conn.transaction():
            ids: dict[int, int] = {}
            pending_deliveries = False
            for rows in read_deliveries(source):
                inserted, mapped = await copy.insert_deliveries(conn, rows)
                ids.update(mapped)
                _count(result, "deliveries", inserted, len(rows))
                pending_deliveries |= inserted > 0 and any(r["state"] == "pending" for r in rows)
            new_jobs: set[str] = set()
            for rows in read_jobs(source):
                new = await copy.insert_jobs(conn, rows)
                new_jobs |= new
                _count(result, "jobs", len(new), len(rows))
            for rows in read_events(source):
                # An event comes with its job, once: those of a job already here were copied before.
                fresh = [
                    dict(r, delivery_id=ids.get(r["delivery_id"])) for r in rows if r["job_id"] in new_jobs
                ]
                inserted = await copy.insert_events(conn, fresh) if fresh else 0
                _count(result, "job_events", inserted, len(rows))
            queued = False
            for rows in read_outputs(source, now):
                inserted = await copy.insert_outputs(conn, rows)
                _count(result, "outputs", inserted, len(rows))
                result.paths_converted += sum(r["converted"] for r in rows)
                queued |= inserted > 0 and any(r["state"] == "pending" for r in rows)
            for rows in read_submissions(source):
                inserted = await copy.insert_submissions(conn, rows)
                _count(result, "submissions", inserted, len(rows))
            for rows in read_tokens(source):
                inserted = await copy.insert_tokens(conn, rows)
                _count(result, "tokens", inserted, len(rows))
            notify = False
            for rows in read_notifications(source):
                inserted = await copy.insert_notifications(conn, rows)
                _count(result, "notifications", inserted, len(rows))
                notify |= inserted > 0 and any(r["state"] == "pending" for r in rows)
            await copy.wake(conn, deliveries=pending_deliveries, downloads=queued, notifications=notify)
    except psycopg.Error as exc:
        raise MigrateError(
            f"copying into the target failed (nothing was kept): {str(exc).strip()[:300]}"
        ) from None
    finally:
        await conn.close()
    return result


def _count(result: Copied, table: str, copied: int, seen: int) -> None:
    result.copied[table] += copied
    result.present[table] += seen - copied


def migrate_sqlite_to_postgres(source_url: str, target_url: str) -> Copied:
    """`store migrate --from sqlite:///... --to postgresql://...` (synchronous, for the CLI)."""
    import asyncio

    if not target_url.startswith(("postgresql://", "postgres://")):
        raise MigrateError(f"the target must be a postgresql:// URL, not {target_url.split(':', 1)[0]!r}")
    source = open_source(sqlite_path(source_url))
    try:
        return asyncio.run(copy_store(source, target_url))
    finally:
        source.close()
