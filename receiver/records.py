"""The job store's operations as plain functions over a SQLite connection.

Writes run inside a transaction opened by the caller (the single writer, or a CLI command), so
each function is atomic with whatever else that transaction holds. The rules of the job state
machine live in `receiver.states`; this module only applies them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from openrouter_video import VideoJob

from .domain.events import (
    MAX_STORED_KEY,
    SELFTEST_HEADER,
    SELFTEST_PREFIX,
    is_selftest,
    plan_delivery,
    storable_key,
)
from .domain.model import AppliedDelivery, ApplyResult, Delivery, RecordedDelivery
from .domain.pages import (
    DELIVERY_STATES,
    DOWNLOAD_STATES,
    UNPROCESSED,
    check_delivery_state,
    decode_cursor,
    decode_delivery_cursor,
    encode_cursor,
)
from .domain.plan import (
    JOB_STATE_COLUMNS,
    MAX_OUTPUTS_PER_JOB,
    JobChange,
    JobState,
    plan_job_update,
    plan_not_found_upstream,
    plan_poll_schedule,
    plan_registration,
)

__all__ = [
    "DELIVERY_STATES",
    "DOWNLOAD_STATES",
    "UNPROCESSED",
    "decode_cursor",
    "decode_delivery_cursor",
    "encode_cursor",
    "MAX_OUTPUTS_PER_JOB",
    "MAX_STORED_KEY",
    "SELFTEST_HEADER",
    "SELFTEST_PREFIX",
    "AppliedDelivery",
    "ApplyResult",
    "Delivery",
    "RecordedDelivery",
    "is_selftest",
    "storable_key",
]


# -- storing decided changes -------------------------------------------------------------------

_STATE_SQL = f"SELECT {', '.join(JOB_STATE_COLUMNS)} FROM jobs WHERE id = ?"


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


# -- applying upstream job states --------------------------------------------------------------


def apply_job_update(
    conn: sqlite3.Connection, job: VideoJob, *, source: str, now: float, delivery_id: int | None = None
) -> ApplyResult:
    """Move the job record forward by an upstream view of the job (webhook or poll)."""
    change = plan_job_update(read_state(conn, job.id), job, source=source, now=now, delivery_id=delivery_id)
    store_change(conn, change)
    assert change.result is not None  # an upstream view always has one
    return change.result


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


# -- deliveries --------------------------------------------------------------------------------


def record_delivery(conn: sqlite3.Connection, delivery: Delivery) -> RecordedDelivery:
    """Keep a verified delivery once per idempotency key, as `pending`; `apply_pending` applies it.

    This is all the webhook answer waits for, so it is one INSERT: parsing the body and moving the
    job along happen after the answer, from the stored row.
    """
    if delivery.selftest_job is not None:
        return _record_selftest(conn, delivery)
    cursor = conn.execute(
        "INSERT OR IGNORE INTO deliveries (idempotency_key, received_at, signed_at, remote_addr, headers, body, "
        "replay_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            delivery.idempotency_key,
            delivery.received_at,
            delivery.signed_at,
            delivery.remote_addr,
            json.dumps(delivery.headers),
            delivery.body,
            delivery.replay_key,
        ),
    )
    if cursor.rowcount == 0:
        return RecordedDelivery(duplicate=True, delivery_id=None)
    return RecordedDelivery(duplicate=False, delivery_id=cursor.lastrowid)


def _record_selftest(conn: sqlite3.Connection, delivery: Delivery) -> RecordedDelivery:
    """A `webhook test` delivery: kept (state 'test', for the record), never applied, no job."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO deliveries (idempotency_key, job_id, event_type, received_at, signed_at, "
        "remote_addr, headers, body, replay_key, state, applied_at) "
        "VALUES (?, ?, 'selftest', ?, ?, ?, ?, ?, ?, 'test', ?)",
        (
            delivery.idempotency_key,
            delivery.selftest_job,
            delivery.received_at,
            delivery.signed_at,
            delivery.remote_addr,
            json.dumps(delivery.headers),
            delivery.body,
            delivery.replay_key,
            delivery.received_at,
        ),
    )
    return RecordedDelivery(duplicate=cursor.rowcount == 0, delivery_id=cursor.lastrowid or None)


_TO_APPLY = "id, idempotency_key, received_at, body"  # what _apply_delivery reads of a row


def apply_pending(
    conn: sqlite3.Connection, limit: int, now: float, *, isolate: bool = False
) -> list[AppliedDelivery]:
    """Apply up to `limit` pending deliveries to their jobs, oldest first (the order they were stored).

    `isolate` runs each in a SAVEPOINT and marks one that raises as failed, with the error, instead
    of failing them all (the applier's way past a delivery the code cannot handle).
    """
    rows = conn.execute(
        f"SELECT {_TO_APPLY} FROM deliveries WHERE state = 'pending' ORDER BY id LIMIT ?", (limit,)
    ).fetchall()
    return _apply_rows(conn, rows, now, isolate=isolate)


def _apply_rows(
    conn: sqlite3.Connection, rows: list[sqlite3.Row], now: float, *, isolate: bool
) -> list[AppliedDelivery]:
    if not isolate:
        return [_apply_delivery(conn, row, now) for row in rows]
    applied = []
    for row in rows:
        conn.execute("SAVEPOINT apply_one")
        try:
            applied.append(_apply_delivery(conn, row, now))
        except sqlite3.OperationalError:
            raise  # the database failing, not this delivery
        except Exception as exc:
            conn.execute("ROLLBACK TO apply_one")
            error = f"internal error while applying: {type(exc).__name__}: {str(exc)[:200]}"
            conn.execute(
                "UPDATE deliveries SET state = 'failed', error = ?, applied_at = ? WHERE id = ?",
                (error, now, row["id"]),
            )
            applied.append(
                AppliedDelivery(
                    row["id"], row["idempotency_key"], row["received_at"], None, None, None, error
                )
            )
        conn.execute("RELEASE apply_one")
    return applied


def apply_pending_for_job(conn: sqlite3.Connection, job_id: str, now: float) -> list[AppliedDelivery]:
    """Apply, now and in stored order, the pending deliveries of one job (the query API's way to show
    an acknowledged delivery before the applier reaches it). Other jobs' deliveries keep their turn."""
    rows = conn.execute(
        f"SELECT {_TO_APPLY} FROM deliveries WHERE state = 'pending' AND instr(body, ?) > 0 ORDER BY id",
        (job_id.encode(),),
    ).fetchall()
    applied = []
    for row in rows:
        plan = plan_delivery(row["body"])
        if plan.job_id != job_id or plan.state == "failed":
            continue  # the id appears in another job's event (a prompt, say), or not an event: the
            # applier marks it failed in its turn
        applied.append(_apply_delivery(conn, row, now))
    return applied


def probe_delivery_write(conn: sqlite3.Connection) -> None:
    """Write a delivery row and take it back: readiness exercises the path every webhook takes."""
    conn.execute("SAVEPOINT probe")
    try:
        conn.execute(
            "INSERT INTO deliveries (idempotency_key, received_at, headers, body) VALUES (?, ?, '{}', x'')",
            (f"readiness-probe-{time.time()}", time.time()),
        )
    finally:
        conn.execute("ROLLBACK TO probe")
        conn.execute("RELEASE probe")


def _not_applied(columns: str) -> str:
    """Deliveries failed or pending, each state through its own partial index."""
    return (
        f"SELECT {columns} FROM deliveries WHERE state = 'failed' "
        f"UNION ALL SELECT {columns} FROM deliveries WHERE state = 'pending'"
    )


def pending_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()[0]


def _apply_delivery(conn: sqlite3.Connection, row: sqlite3.Row, now: float) -> AppliedDelivery:
    """Parse one stored body and apply its event; a body that is not a usable event is marked failed."""
    plan = plan_delivery(row["body"])
    decision, queued = None, 0
    if plan.job is not None:
        # The job's clock is when the webhook arrived, not when it was applied.
        result = apply_job_update(
            conn, plan.job, source="webhook", now=row["received_at"], delivery_id=row["id"]
        )
        decision, queued = result.decision, result.outputs_queued
    conn.execute(
        "UPDATE deliveries SET state = ?, error = ?, job_id = ?, event_type = ?, status = ?, applied_at = ? "
        "WHERE id = ?",
        (plan.state, plan.error, plan.job_id, plan.event_type, plan.status, now, row["id"]),
    )
    return AppliedDelivery(
        delivery_id=row["id"],
        idempotency_key=row["idempotency_key"],
        received_at=row["received_at"],
        job_id=plan.job_id,
        status=plan.status,
        decision=decision,
        error=plan.error,
        outputs_queued=queued,
    )


def reprocess_deliveries(
    conn: sqlite3.Connection,
    delivery_ids: list[int] | None = None,
    now: float | None = None,
    *,
    isolate: bool = False,
) -> list[AppliedDelivery]:
    """Apply stored deliveries that failed (e.g. after a bug fix) or are still pending (receiver stopped).

    `isolate`: one that raises is marked failed (with the error) instead of failing them all.
    """
    now = time.time() if now is None else now
    if delivery_ids:
        marks = ",".join("?" * len(delivery_ids))
        rows = conn.execute(
            f"SELECT {_TO_APPLY} FROM deliveries WHERE state != 'applied' AND id IN ({marks}) ORDER BY id",
            delivery_ids,
        ).fetchall()
    else:
        rows = conn.execute(f"{_not_applied(_TO_APPLY)} ORDER BY id").fetchall()
    return _apply_rows(conn, rows, now, isolate=isolate)


DELIVERY_COLUMNS = (
    "id, idempotency_key, job_id, event_type, status, received_at, remote_addr, state, error, applied_at, "
    "length(body) AS body_bytes"
)  # what is shown of a delivery: never its body or its headers (the signature is one)


def list_deliveries(
    conn: sqlite3.Connection, *, unprocessed: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest deliveries; `unprocessed`: only those not applied (failed, or still pending)."""
    rows, _cursor = page_deliveries(conn, state=UNPROCESSED if unprocessed else None, limit=limit)
    return rows


def page_deliveries(
    conn: sqlite3.Connection, *, state: str | None = None, cursor: str | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset pagination on the id; `state`: one of DELIVERY_STATES, or UNPROCESSED.

    The cursor is the last id shown (ValueError for one this function did not return).
    """
    before = decode_delivery_cursor(cursor) if cursor else None
    where = "AND id < ?" if before is not None else ""
    params: list[Any] = [before] if before is not None else []
    if state == UNPROCESSED:  # each state through its own partial index
        sql = (
            f"SELECT * FROM (SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = 'failed' {where} "
            f"UNION ALL SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = 'pending' {where}) "
            "ORDER BY id DESC LIMIT ?"
        )
        params = params * 2
    elif state is not None:
        check_delivery_state(state)
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = ? {where} ORDER BY id DESC LIMIT ?"
        params = [state, *params]
    else:
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE 1 {where} ORDER BY id DESC LIMIT ?"
    rows = [dict(r) for r in conn.execute(sql, (*params, limit + 1)).fetchall()]
    next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
    return rows[:limit], next_cursor


# -- registration and fallback polling ---------------------------------------------------------


def register_job(
    conn: sqlite3.Connection,
    job_id: str,
    *,
    model: str | None,
    prompt: str | None,
    now: float,
    first_poll_at: float,
) -> bool:
    """Track a submitted job; idempotent, and fine whether its webhook came first or not. True if new."""
    change = plan_registration(
        read_state(conn, job_id, outputs=False),
        job_id,
        model=model,
        prompt=prompt,
        now=now,
        first_poll_at=first_poll_at,
    )
    store_change(conn, change)
    return change.created


def due_polls(conn: sqlite3.Connection, now: float, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, submitted_at, created_at, poll_attempts FROM jobs "
        "WHERE next_poll_at IS NOT NULL AND next_poll_at <= ? ORDER BY next_poll_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [dict(r) for r in rows]


def schedule_poll(
    conn: sqlite3.Connection, job_id: str, next_at: float | None, *, attempted: bool = True
) -> None:
    current = read_state(conn, job_id, outputs=False)
    store_change(conn, plan_poll_schedule(current, job_id, next_at, attempted=attempted))


def mark_not_found_upstream(conn: sqlite3.Connection, job_id: str, now: float, detail: str) -> None:
    """The fallback's end for a job upstream does not know (see plan_not_found_upstream)."""
    current = read_state(conn, job_id, outputs=False)
    store_change(conn, plan_not_found_upstream(current, job_id, detail=detail, now=now))


def delete_job(conn: sqlite3.Connection, job_id: str) -> list[str] | None:
    """Delete a job record, its events and outputs; the outputs' file paths (None: no such job)."""
    if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
        return None
    paths = [
        r[0]
        for r in conn.execute("SELECT path FROM outputs WHERE job_id = ? AND path IS NOT NULL", (job_id,))
    ]
    conn.execute("DELETE FROM outputs WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
    return paths


# -- the fetch queue ---------------------------------------------------------------------------


_CLAIMED = "WHERE job_id = ? AND idx = ? AND state = 'downloading' AND claimed_by = ?"


def claim_downloads(
    conn: sqlite3.Connection, now: float, limit: int, *, worker: str, lease: float
) -> list[dict[str, Any]]:
    """Claim up to `limit` due outputs for `worker` until `now + lease`, with their job's upstream view.

    Due: pending and past their next attempt, or downloading under a lease that ran out (the worker
    that held it died or stalled). Only the claimant may record the outcome (`claimed_by`).
    """
    rows = conn.execute(
        "SELECT o.job_id, o.idx, o.attempts, j.upstream FROM outputs o JOIN jobs j ON j.id = o.job_id "
        "WHERE o.rowid IN (SELECT rowid FROM outputs WHERE state = 'pending' AND next_attempt_at <= ? "
        "UNION ALL SELECT rowid FROM outputs WHERE state = 'downloading' AND lease_until < ?) "
        "ORDER BY o.next_attempt_at LIMIT ?",
        (now, now, limit),
    ).fetchall()
    for row in rows:
        conn.execute(
            "UPDATE outputs SET state = 'downloading', attempts = attempts + 1, claimed_by = ?, lease_until = ?, "
            "updated_at = ? WHERE job_id = ? AND idx = ?",
            (worker, now + lease, now, row["job_id"], row["idx"]),
        )
    return [dict(r) for r in rows]


def renew_claims(conn: sqlite3.Connection, outputs: list[tuple[str, int]], worker: str, until: float) -> int:
    """Extend the leases `worker` holds on `outputs` (those it is downloading); return how many it holds."""
    held = 0
    for job_id, index in outputs:
        held += conn.execute(
            f"UPDATE outputs SET lease_until = ? {_CLAIMED}", (until, job_id, index, worker)
        ).rowcount
    return held


def release_claims_of_others(conn: sqlite3.Connection, worker: str, now: float) -> int:
    """End the leases of every other worker at once. Only for a store one process serves alone (the
    SQLite store under its data-dir lock): a previous run's claims are then known to be dead."""
    return conn.execute(
        "UPDATE outputs SET lease_until = ? WHERE state = 'downloading' AND claimed_by IS NOT ? ",
        (now - 1, worker),
    ).rowcount


def finish_download(
    conn: sqlite3.Connection,
    job_id: str,
    index: int,
    *,
    path: str,
    size: int,
    sha256: str,
    now: float,
    worker: str,
) -> bool:
    """Record a download done; False (nothing recorded) when `worker` no longer holds the claim."""
    updated = conn.execute(
        "UPDATE outputs SET state = 'done', bytes = ?, sha256 = ?, path = ?, error = NULL, updated_at = ?, "
        f"claimed_by = NULL, lease_until = NULL {_CLAIMED}",
        (size, sha256, path, now, job_id, index, worker),
    ).rowcount
    if updated:
        add_event(
            conn, job_id, now, "fetcher", "downloaded", None, f"output {index}: {size} bytes, sha256 {sha256}"
        )
    return bool(updated)


def retry_download(
    conn: sqlite3.Connection,
    job_id: str,
    index: int,
    *,
    next_at: float,
    error: str,
    now: float,
    worker: str,
    count_attempt: bool = True,
) -> bool:
    """Put a claimed output back in the queue for `next_at`; `count_attempt=False` gives the attempt back
    (a wait that is the receiver's problem, such as disk space, never uses up a paid output's tries)."""
    return bool(
        conn.execute(
            "UPDATE outputs SET state = 'pending', next_attempt_at = ?, error = ?, updated_at = ?, "
            f"attempts = attempts - ?, claimed_by = NULL, lease_until = NULL {_CLAIMED}",
            (next_at, error, now, 0 if count_attempt else 1, job_id, index, worker),
        ).rowcount
    )


def end_download(
    conn: sqlite3.Connection, job_id: str, index: int, *, state: str, error: str, now: float, worker: str
) -> bool:
    """A final failure: `gone` (404/409/410 upstream) or `failed` (auth, or attempts exhausted)."""
    updated = conn.execute(
        f"UPDATE outputs SET state = ?, error = ?, updated_at = ?, claimed_by = NULL, lease_until = NULL {_CLAIMED}",
        (state, error, now, job_id, index, worker),
    ).rowcount
    if updated:
        add_event(conn, job_id, now, "fetcher", f"download_{state}", None, f"output {index}: {error}")
    return bool(updated)


def queue_depth(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM outputs WHERE state IN ('pending', 'downloading')").fetchone()[
        0
    ]


def next_download_at(conn: sqlite3.Connection) -> float | None:
    """When the next output falls due: a pending one's next attempt, or a lease running out."""
    row = conn.execute(
        "SELECT min(coalesce((SELECT min(next_attempt_at) FROM outputs WHERE state = 'pending'), 1e300), "
        "coalesce((SELECT min(lease_until) FROM outputs WHERE state = 'downloading'), 1e300))"
    ).fetchone()
    return row[0] if row[0] < 1e300 else None


# -- queries -----------------------------------------------------------------------------------

JOB_COLUMNS = (
    "id, model, prompt, status, created_at, submitted_at, first_seen_at, updated_at, terminal_at, "
    "source, registered, error, cost, generation_id"
)


def get_job(conn: sqlite3.Connection, job_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    job = dict(row)
    job["registered"] = bool(job["registered"])
    job["outputs"] = [
        dict(r)
        for r in conn.execute(
            'SELECT idx AS "index", state, attempts, bytes, sha256, error, updated_at FROM outputs '
            "WHERE job_id = ? ORDER BY idx",
            (job_id,),
        )
    ]
    job["events"] = [
        dict(r)
        for r in conn.execute(
            "SELECT at, source, kind, status, detail FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
        )
    ]
    return job


def jobs_by_status(conn: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: r[1] for r in conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")}


def output_path(conn: sqlite3.Connection, job_id: str, index: int) -> str | None:
    row = conn.execute(
        "SELECT path FROM outputs WHERE job_id = ? AND idx = ? AND state = 'done'", (job_id, index)
    ).fetchone()
    return row["path"] if row else None


def list_jobs(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    model: str | None = None,
    since: float | None = None,
    until: float | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset pagination on (created_at, id)."""
    where: list[str] = []
    params: list[Any] = []
    if status:
        where.append("status = ?")
        params.append(status)
    if model:
        where.append("model = ?")
        params.append(model)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at < ?")
        params.append(until)
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        where.append("(created_at, id) < (?, ?)")
        params += [created_at, job_id]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    jobs = [dict(r) for r in rows[:limit]]
    for job in jobs:
        job["registered"] = bool(job["registered"])
    next_cursor = encode_cursor(jobs[-1]["created_at"], jobs[-1]["id"]) if len(rows) > limit else None
    return jobs, next_cursor
