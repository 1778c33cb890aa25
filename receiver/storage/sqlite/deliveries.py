"""The delivery log in SQLite as plain functions over a connection, inside the caller's transaction.

Storing a delivery is one INSERT (all the webhook's 2xx waits for); applying it happens later, from
the stored row: `receiver.domain.events.plan_delivery` says what the body is, the job's change is
planned and stored by `jobs.apply_job_update`. The writer's transaction is the claim: one process.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from ...domain.events import plan_delivery
from ...domain.model import AppliedDelivery, Delivery, DeliveryRecord, Page, RecordedDelivery
from ...domain.pages import UNPROCESSED, check_delivery_state, decode_delivery_cursor, encode_delivery_cursor
from .jobs import apply_job_update
from .notifications import write_outbox
from .submissions import link_submission

_TO_APPLY = "id, idempotency_key, received_at, body, submission_id"  # what _apply_delivery reads of a row
# What is shown of a delivery: never its body or its headers (the signature is one).
SHOWN = (
    "id, idempotency_key, job_id, event_type, status, received_at, remote_addr, state, error, applied_at, "
    "length(body) AS body_bytes"
)


def record_delivery(conn: sqlite3.Connection, delivery: Delivery) -> RecordedDelivery:
    """Keep a verified delivery once per idempotency key (and replay key), as `pending`."""
    if delivery.selftest_job is not None:
        return _record_selftest(conn, delivery)
    cursor = conn.execute(
        "INSERT OR IGNORE INTO deliveries (idempotency_key, received_at, signed_at, remote_addr, headers, body, "
        "replay_key, submission_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            delivery.idempotency_key,
            delivery.received_at,
            delivery.signed_at,
            delivery.remote_addr,
            json.dumps(delivery.headers),
            delivery.body,
            delivery.replay_key,
            delivery.submission_id,
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


def apply_pending(
    conn: sqlite3.Connection,
    limit: int,
    now: float,
    *,
    isolate: bool = False,
    notify_default: str | None = None,
) -> list[AppliedDelivery]:
    """Apply up to `limit` pending deliveries to their jobs, oldest first (the order they were stored).

    `isolate` runs each in a SAVEPOINT and marks one that raises as failed, with the error, instead
    of failing them all (the applier's way past a delivery the code cannot handle).
    `notify_default`: the receiver's default notify URL (RECEIVER_NOTIFY_URL), for the outbox.
    """
    rows = conn.execute(
        f"SELECT {_TO_APPLY} FROM deliveries WHERE state = 'pending' ORDER BY id LIMIT ?", (limit,)
    ).fetchall()
    return _apply_rows(conn, rows, now, isolate=isolate, notify_default=notify_default)


def _apply_rows(
    conn: sqlite3.Connection,
    rows: list[sqlite3.Row],
    now: float,
    *,
    isolate: bool,
    notify_default: str | None,
) -> list[AppliedDelivery]:
    if not isolate:
        return [_apply_delivery(conn, row, now, notify_default) for row in rows]
    applied = []
    for row in rows:
        conn.execute("SAVEPOINT apply_one")
        try:
            applied.append(_apply_delivery(conn, row, now, notify_default))
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


def _apply_delivery(
    conn: sqlite3.Connection, row: sqlite3.Row, now: float, notify_default: str | None
) -> AppliedDelivery:
    """Apply one stored body's event; a body that is not a usable event is marked failed."""
    plan = plan_delivery(row["body"])
    decision, queued = None, 0
    if plan.job is not None:
        # The job's clock is when the webhook arrived, not when it was applied.
        result = apply_job_update(
            conn, plan.job, source="webhook", now=row["received_at"], delivery_id=row["id"]
        )
        decision, queued = result.decision, result.outputs_queued
        if row["submission_id"] is not None:
            link_submission(conn, row["submission_id"], plan.job.id, plan.job.model, row["received_at"])
        # After the link: a job tied to its submission only now may have its notify_url only now.
        write_outbox(conn, plan.job.id, now, notify_default)
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


def apply_pending_for_job(
    conn: sqlite3.Connection, job_id: str, now: float, notify_default: str | None = None
) -> list[AppliedDelivery]:
    """Apply, now and in stored order, the pending deliveries of one job (the query API's way to show
    an acknowledged delivery before the applier reaches it). Other jobs' deliveries keep their turn."""
    rows = conn.execute(
        f"SELECT {_TO_APPLY} FROM deliveries WHERE state = 'pending' AND instr(body, ?) > 0 ORDER BY id",
        (job_id.encode(),),
    ).fetchall()
    applied = []
    for row in rows:
        plan = plan_delivery(row["body"])
        # The id may appear in another job's event (a prompt, say); a body that is not an event is
        # marked failed by the applier in its turn.
        if plan.job_id == job_id and plan.state != "failed":
            applied.append(_apply_delivery(conn, row, now, notify_default))
    return applied


def reprocess_deliveries(
    conn: sqlite3.Connection,
    delivery_ids: list[int] | None,
    now: float,
    *,
    isolate: bool = True,
    notify_default: str | None = None,
) -> list[AppliedDelivery]:
    """Apply stored deliveries that failed (e.g. after a bug fix) or are still pending (receiver stopped)."""
    if delivery_ids:
        marks = ",".join("?" * len(delivery_ids))
        rows = conn.execute(
            f"SELECT {_TO_APPLY} FROM deliveries WHERE state != 'applied' AND id IN ({marks}) ORDER BY id",
            delivery_ids,
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_TO_APPLY} FROM deliveries WHERE state = 'failed' "
            f"UNION ALL SELECT {_TO_APPLY} FROM deliveries WHERE state = 'pending' ORDER BY id"
        ).fetchall()
    return _apply_rows(conn, rows, now, isolate=isolate, notify_default=notify_default)


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


def pending_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()[0])


def page_deliveries(conn: sqlite3.Connection, *, state: str | None, cursor: str | None, limit: int) -> Page:
    """Newest first, keyset pagination on the id; `state`: a delivery state, or UNPROCESSED."""
    check_delivery_state(state)
    before = decode_delivery_cursor(cursor) if cursor else None
    where = "AND id < ?" if before is not None else ""
    params: list[Any] = [before] if before is not None else []
    if state == UNPROCESSED:  # each state through its own partial index
        sql = (
            f"SELECT * FROM (SELECT {SHOWN} FROM deliveries WHERE state = 'failed' {where} "
            f"UNION ALL SELECT {SHOWN} FROM deliveries WHERE state = 'pending' {where}) "
            "ORDER BY id DESC LIMIT ?"
        )
        params = params * 2
    elif state is not None:
        sql = f"SELECT {SHOWN} FROM deliveries WHERE state = ? {where} ORDER BY id DESC LIMIT ?"
        params = [state, *params]
    else:
        sql = f"SELECT {SHOWN} FROM deliveries WHERE 1 {where} ORDER BY id DESC LIMIT ?"
    rows = [DeliveryRecord(**dict(r)) for r in conn.execute(sql, (*params, limit + 1)).fetchall()]
    next_cursor = encode_delivery_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page(rows[:limit], next_cursor)
