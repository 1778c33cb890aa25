"""The job store's operations as plain functions over a SQLite connection.

Writes run inside a transaction opened by the caller (the single writer, or a CLI command), so
each function is atomic with whatever else that transaction holds. The rules of the job state
machine live in `receiver.states`; this module only applies them.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from openrouter_video import (
    COMPLETED,
    TERMINAL_STATUSES,
    VideoJob,
    WebhookEvent,
    WebhookPayloadError,
    is_valid_job_id,
    parse_event,
)

from .states import Decision, decide

_TERMINAL_MARKS = ",".join("?" * len(TERMINAL_STATUSES))
# `deleted`: done once, its file removed by the retention policy (RECEIVER_RETENTION_DAYS); the
# output's `updated_at` says when and its `error` why.
DOWNLOAD_STATES = ("pending", "downloading", "done", "failed", "gone", "deleted")
# The job ids of `openrouter-video webhook test`: a verified delivery of one is kept as a test and
# never applied (it must not create a job record).
SELFTEST_PREFIX = "selftest-"
# Sent by `webhook test`; honoured only once the delivery's signature is verified.
SELFTEST_HEADER = "X-Receiver-Selftest"
# A real job has a handful of outputs; a signed event announcing more is refused beyond this, so one
# delivery cannot queue hundreds of thousands of downloads.
MAX_OUTPUTS_PER_JOB = 16
# Idempotency keys are stored whole up to this length; a longer one is stored as a hash of all of
# it, never cut (two keys sharing a prefix must not collide).
MAX_STORED_KEY = 200


def storable_key(key: str) -> str:
    """The idempotency key as stored: whole, or `sha256:<hex>` of the whole key when it is long."""
    if len(key) <= MAX_STORED_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """A verified webhook delivery as received (raw body and relevant headers)."""

    idempotency_key: str
    body: bytes
    headers: dict[str, str]
    received_at: float
    signed_at: int | None
    remote_addr: str | None = None
    replay_key: bytes | None = None  # hash of signed timestamp + body: the same signed request seen again
    selftest_job: str | None = None  # a `webhook test` delivery (its synthetic job id): stored as 'test'


@dataclass(frozen=True)
class RecordedDelivery:
    """What storing a delivery did: kept it (pending, with its id) or found its key already stored."""

    duplicate: bool
    delivery_id: int | None


@dataclass(frozen=True)
class AppliedDelivery:
    """A stored delivery taken out of `pending`: applied to its job, or failed (kept, with the reason)."""

    delivery_id: int
    idempotency_key: str
    received_at: float
    job_id: str | None
    status: str | None
    decision: Decision | None
    error: str | None
    outputs_queued: int = 0

    @property
    def applied(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ApplyResult:
    decision: Decision
    previous: str | None
    outputs_queued: int


# -- applying upstream job states --------------------------------------------------------------


def apply_job_update(
    conn: sqlite3.Connection, job: VideoJob, *, source: str, now: float, delivery_id: int | None = None
) -> ApplyResult:
    """Move the job record forward by an upstream view of the job (webhook or poll)."""
    job = _storable_job(job)
    row = conn.execute("SELECT status, upstream FROM jobs WHERE id = ?", (job.id,)).fetchone()
    previous = row["status"] if row else None
    decision = decide(previous, job.status)
    terminal_at = now if job.status in TERMINAL_STATUSES else None
    cost = job.usage.cost if job.usage else None
    if row is None:
        conn.execute(
            "INSERT INTO jobs (id, model, status, created_at, first_seen_at, updated_at, terminal_at, source, "
            "error, cost, generation_id, upstream) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.model,
                job.status,
                now,
                now,
                now,
                terminal_at,
                source,
                job.error,
                cost,
                job.generation_id,
                json.dumps(job.raw),
            ),
        )
    elif decision in ("advance", "same"):
        merged = _merge_upstream(row["upstream"], job.raw)
        if decision == "advance":
            conn.execute(
                "UPDATE jobs SET status = ?, updated_at = ?, source = ?, terminal_at = COALESCE(terminal_at, ?), "
                "error = COALESCE(?, error), cost = COALESCE(?, cost), generation_id = COALESCE(?, generation_id), "
                "model = COALESCE(model, ?), upstream = ?, "
                "next_poll_at = CASE WHEN ? THEN NULL ELSE next_poll_at END WHERE id = ?",
                (
                    job.status,
                    now,
                    source,
                    terminal_at,
                    job.error,
                    cost,
                    job.generation_id,
                    job.model,
                    merged,
                    terminal_at is not None,
                    job.id,
                ),
            )
        else:
            conn.execute(
                "UPDATE jobs SET error = COALESCE(error, ?), cost = COALESCE(cost, ?), "
                "generation_id = COALESCE(generation_id, ?), model = COALESCE(model, ?), upstream = ? WHERE id = ?",
                (job.error, cost, job.generation_id, job.model, merged, job.id),
            )
    if decision != "same":
        kind = {"create": "status", "advance": "status"}.get(decision, decision)
        detail = job.error if decision in ("create", "advance") else f"current status is {previous}"
        add_event(conn, job.id, now, source, kind, job.status, detail, delivery_id)
    queued = 0
    if job.status == COMPLETED and decision in ("create", "advance", "same"):
        announced = job.output_count
        for index in range(min(announced, MAX_OUTPUTS_PER_JOB)):
            queued += conn.execute(
                "INSERT OR IGNORE INTO outputs (job_id, idx, state, next_attempt_at, updated_at) "
                "VALUES (?, ?, 'pending', ?, ?)",
                (job.id, index, now, now),
            ).rowcount
        if announced > MAX_OUTPUTS_PER_JOB and queued:
            detail = (
                f"{announced} outputs announced; only the first {MAX_OUTPUTS_PER_JOB} are downloaded, "
                f"the other {announced - MAX_OUTPUTS_PER_JOB} refused"
            )
            add_event(conn, job.id, now, source, "outputs_refused", None, detail, delivery_id)
    return ApplyResult(decision, previous, queued)


def _storable(text: str | None) -> str | None:
    """SQLite stores UTF-8, and JSON escapes allow lone surrogates (\\ud800) that UTF-8 cannot encode."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _storable_job(job: VideoJob) -> VideoJob:
    fields: dict[str, Any] = {
        name: getattr(job, name) for name in ("id", "status", "model", "error", "generation_id")
    }
    clean: dict[str, Any] = {name: _storable(value) for name, value in fields.items()}
    return job if clean == fields else dataclasses.replace(job, **clean)


def _merge_upstream(old: str | None, new: dict[str, Any]) -> str:
    merged = json.loads(old) if old else {}
    merged.update({k: v for k, v in new.items() if v is not None})
    return json.dumps(merged)


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


def is_selftest(job_id: str | None) -> bool:
    return bool(job_id) and str(job_id).startswith(SELFTEST_PREFIX)


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
        try:
            if parse_event(row["body"]).job_id != job_id:
                continue  # the id appears in another job's event (a prompt, say)
        except WebhookPayloadError:
            continue  # not an event: the applier marks it failed in its turn
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
    try:
        event, error = parse_event(row["body"]), None
    except WebhookPayloadError as exc:
        event, error = None, exc.message
    if event is not None and error is None:
        error = _unusable(event)
    job_id = _storable(event.job_id) if event else None
    status = _storable(event.status) if event else None
    event_type = _storable(event.type) if event else None
    decision, queued = None, 0
    state = "applied" if error is None else "failed"
    if event is not None and error is None and is_selftest(job_id):
        state = "test"  # a self-test sent without its header (an older CLI): still never a job
    elif event is not None and error is None:
        # The job's clock is when the webhook arrived, not when it was applied.
        result = apply_job_update(
            conn, event.job, source="webhook", now=row["received_at"], delivery_id=row["id"]
        )
        decision, queued = result.decision, result.outputs_queued
    conn.execute(
        "UPDATE deliveries SET state = ?, error = ?, job_id = ?, event_type = ?, status = ?, applied_at = ? "
        "WHERE id = ?",
        (state, error, job_id, event_type, status, now, row["id"]),
    )
    return AppliedDelivery(
        delivery_id=row["id"],
        idempotency_key=row["idempotency_key"],
        received_at=row["received_at"],
        job_id=job_id,
        status=status,
        decision=decision,
        error=error,
        outputs_queued=queued,
    )


def _unusable(event: WebhookEvent) -> str | None:
    if not is_valid_job_id(event.job_id):
        return f"job id {event.job_id[:80]!r} is not a valid job id"
    return None


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
DELIVERY_STATES = ("pending", "applied", "failed", "test")  # test: a `webhook test` delivery
UNPROCESSED = "unprocessed"  # a state filter: failed or pending


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
        if state not in DELIVERY_STATES:
            raise ValueError(f"state must be one of {', '.join((*DELIVERY_STATES, UNPROCESSED))}")
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = ? {where} ORDER BY id DESC LIMIT ?"
        params = [state, *params]
    else:
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE 1 {where} ORDER BY id DESC LIMIT ?"
    rows = [dict(r) for r in conn.execute(sql, (*params, limit + 1)).fetchall()]
    next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def decode_delivery_cursor(cursor: str) -> int:
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19):
        raise ValueError("bad cursor")
    return int(cursor)


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
    row = conn.execute("SELECT status, registered FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO jobs (id, model, prompt, status, created_at, submitted_at, first_seen_at, updated_at, "
            "source, registered, next_poll_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, 'submit', 1, ?)",
            (job_id, model, prompt, now, now, now, now, first_poll_at),
        )
        add_event(conn, job_id, now, "submit", "registered", "pending")
        return True
    terminal = row["status"] in TERMINAL_STATUSES
    conn.execute(
        "UPDATE jobs SET model = COALESCE(model, ?), prompt = COALESCE(prompt, ?), "
        "submitted_at = COALESCE(submitted_at, ?), registered = 1, "
        "next_poll_at = CASE WHEN ? OR registered = 1 THEN next_poll_at ELSE ? END WHERE id = ?",
        (model, prompt, now, terminal, first_poll_at, job_id),
    )
    if not row["registered"]:
        add_event(conn, job_id, now, "submit", "registered", None)
    return False


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
    conn.execute(
        f"UPDATE jobs SET next_poll_at = CASE WHEN status IN ({_TERMINAL_MARKS}) "
        "THEN NULL ELSE ? END, poll_attempts = poll_attempts + ? WHERE id = ?",
        (*TERMINAL_STATUSES, next_at, 1 if attempted else 0, job_id),
    )


def mark_not_found_upstream(conn: sqlite3.Connection, job_id: str, now: float, detail: str) -> None:
    """The fallback's end for a job upstream does not know: no more polls, an event, and the record's
    error says why. The status stays what it was (no upstream status was ever seen to move it)."""
    conn.execute(
        "UPDATE jobs SET next_poll_at = NULL, error = COALESCE(error, ?), updated_at = ? WHERE id = ?",
        (detail, now, job_id),
    )
    add_event(conn, job_id, now, "poll", "not_found_upstream", None, detail)


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


def encode_cursor(created_at: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, job_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(created_at, (int, float)) or not isinstance(job_id, str):
            raise ValueError("bad cursor")
        job_id.encode("utf-8")
        return float(created_at), job_id
    except (TypeError, OverflowError, UnicodeEncodeError):  # e.g. a bare number, 10**400, a lone surrogate
        raise ValueError("bad cursor") from None


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


# -- dashboard ---------------------------------------------------------------------------------
# What the web dashboard (receiver/ui) needs beyond the query API. Its one caller is
# receiver/ui/data.py (through SQLiteJobStore's dashboard methods); each is a separate function so
# that a new store backend can port them one by one. Every read is bounded at any table size.

# A search examines at most this many jobs per page (newest first, within the other filters): a rare
# term costs one window, not a scan of every job; the page says how far back it searched.
SEARCH_WINDOW = 20_000
# The total cost of a filter is computed when at most this many jobs match it (one bounded read).
TOTAL_CAP = 20_000
# How many changed job ids one look at the change feed returns at most (more: "reload everything").
CHANGES_LIMIT = 200


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _job_filters(
    status: str | None, model: str | None, since: float | None, until: float | None
) -> tuple[list[str], list[Any]]:
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
    return where, params


# Search: a substring of the prompt (case-insensitive for ASCII, as LIKE is) or a prefix of the job id.
_MATCH = "(prompt LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\')"


def _match_params(search: str) -> list[Any]:
    escaped = _like_escape(search)
    return [f"%{escaped}%", f"{escaped}%"]


def dashboard_jobs(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    model: str | None = None,
    since: float | None = None,
    until: float | None = None,
    search: str | None = None,
    cursor: str | None = None,
    newer: bool = False,
    limit: int = 50,
    window: int = SEARCH_WINDOW,
) -> dict[str, Any]:
    """One page of jobs, newest first, keyset paginated both ways on (created_at, id).

    `cursor` with `newer=False`: the jobs older than it; with `newer=True`: the `limit` jobs just newer
    than it (the previous page). `search` narrows to a prompt substring or a job id prefix, examining
    at most `window` jobs; when it stops there, `searched_to` is the creation time of the last job it
    examined and `older` continues the search from there.

    Returns {"jobs": [...], "older": cursor | None, "newer": cursor | None, "searched_to": float | None}.
    ValueError for a cursor this function did not return.
    """
    where, params = _job_filters(status, model, since, until)
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        where.append("(created_at, id) > (?, ?)" if newer else "(created_at, id) < (?, ?)")
        params += [created_at, job_id]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    order, reverse = ("created_at ASC, id ASC", "created_at DESC, id DESC")
    if not newer:
        order, reverse = reverse, order
    edge = None  # where a search window ended, when it ended before the jobs did
    if search:
        # The window is read lazily (a co-routine, in index order): the scan stops at limit + 1 matches.
        rows = conn.execute(
            f"SELECT * FROM (SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY {order} LIMIT ?) "
            f"WHERE {_MATCH} LIMIT ?",
            (*params, window, *_match_params(search), limit + 1),
        ).fetchall()
        more = len(rows) > limit
        if not more:
            examined = f"SELECT created_at, id FROM jobs {clause} ORDER BY {order} LIMIT ?"
            if conn.execute(f"SELECT count(*) FROM ({examined})", (*params, window)).fetchone()[0] >= window:
                edge = conn.execute(
                    f"SELECT created_at, id FROM ({examined}) ORDER BY {reverse} LIMIT 1", (*params, window)
                ).fetchone()
    else:
        rows = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY {order} LIMIT ?", (*params, limit + 1)
        ).fetchall()
        more = len(rows) > limit
        if newer and not more:  # fewer than a page is newer: that is the first page
            return dashboard_jobs(conn, status=status, model=model, since=since, until=until, limit=limit)
    jobs = [dict(r) for r in rows[:limit]]
    for job in jobs:
        job["registered"] = bool(job["registered"])
    if newer:
        jobs.reverse()

    def key(job: dict[str, Any]) -> str:
        return encode_cursor(job["created_at"], job["id"])

    edge_cursor = encode_cursor(edge["created_at"], edge["id"]) if edge is not None else None
    older: str | None
    newer_cursor: str | None
    if newer:
        older = key(jobs[-1]) if jobs else cursor
        newer_cursor = edge_cursor or (key(jobs[0]) if more else None)
    else:
        older = edge_cursor or (key(jobs[-1]) if more else None)
        newer_cursor = (key(jobs[0]) if jobs else cursor) if cursor else None
    return {
        "jobs": jobs,
        "older": older,
        "newer": newer_cursor,
        "searched_to": edge["created_at"] if edge is not None else None,
    }


def dashboard_cost_total(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    model: str | None = None,
    since: float | None = None,
    until: float | None = None,
    search: str | None = None,
    cap: int = TOTAL_CAP,
) -> tuple[int, float] | None:
    """(jobs matching, their total cost in USD) of a whole filter, or None when more than `cap` jobs match
    the filters other than the search (the total would need an unbounded read)."""
    where, params = _job_filters(status, model, since, until)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    match_params = _match_params(search) if search else []
    match = _MATCH if search else "1"
    if not (status and model):
        # Count up to the cap first, through the index that orders the listing: no row is read (the
        # filters are all in that index), so a filter over the cap costs an index walk and no more.
        counted = conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM jobs {clause} ORDER BY created_at DESC, id DESC LIMIT ?)",
            (*params, cap + 1),
        ).fetchone()[0]
        if counted > cap:
            return None
    # One pass over at most cap + 1 jobs (status and model together are in no single index: the
    # rows are read anyway, so counting and adding up go together).
    row = conn.execute(
        f"SELECT count(*), sum({match}), total(CASE WHEN {match} THEN cost END) FROM "
        f"(SELECT id, prompt, cost FROM jobs {clause} ORDER BY created_at DESC, id DESC LIMIT ?)",
        (*match_params, *match_params, *params, cap + 1),
    ).fetchone()
    if row[0] > cap:
        return None
    return int(row[1] or 0), float(row[2])


def distinct_models(conn: sqlite3.Connection, limit: int = 200) -> list[str]:
    """The model names jobs have, by skipping through the model index (one seek per name, not a scan)."""
    rows = conn.execute(
        "WITH RECURSIVE m(name, n) AS ("
        " SELECT (SELECT min(model) FROM jobs), 1"
        " UNION ALL SELECT (SELECT min(model) FROM jobs WHERE model > m.name), n + 1 FROM m"
        " WHERE m.name IS NOT NULL AND n < ?"
        ") SELECT name FROM m WHERE name IS NOT NULL",
        (limit,),
    ).fetchall()
    return [r[0] for r in rows]


def job_timeline(conn: sqlite3.Connection, job_id: str) -> list[dict[str, Any]]:
    """What happened to a job, oldest first: its events and every webhook delivery stored for it.

    Each entry: at, source, kind, status, detail, delivery_id (for a delivery: its id; `kind` is
    `delivery` and `detail` says what became of it). Pending deliveries are not yet tied to a job
    (their job id is read when they are applied), so they show once applied or failed.
    """
    entries = [
        dict(r)
        for r in conn.execute(
            "SELECT at, source, kind, status, detail, delivery_id, id AS seq, 1 AS rank FROM job_events "
            "WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
    ]
    for r in conn.execute(
        "SELECT id, idempotency_key, event_type, status, received_at, state, error, applied_at "
        "FROM deliveries WHERE job_id = ? ORDER BY id",
        (job_id,),
    ):
        outcome = {"applied": "applied", "failed": "not applied", "pending": "not applied yet"}.get(
            r["state"], r["state"]
        )
        detail = f"{r['event_type'] or 'event'} {outcome}"
        if r["error"]:
            detail += f": {r['error']}"
        entries.append(
            {
                "at": r["received_at"],
                "source": "webhook",
                "kind": "delivery",
                "status": r["status"],
                "detail": detail,
                "delivery_id": r["id"],
                "seq": r["id"],
                "rank": 0,  # at the same instant, the delivery comes before what it did
            }
        )
    entries.sort(key=lambda e: (e["at"], e["rank"], e["seq"]))
    for entry in entries:
        del entry["seq"], entry["rank"]
    return entries


def job_polling(conn: sqlite3.Connection, job_id: str) -> dict[str, Any] | None:
    """The fallback poller's view of a job: polls made and the next one (None: not polled any more)."""
    row = conn.execute("SELECT poll_attempts, next_poll_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return dict(row) if row else None


def outputs_needing_attention(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Outputs whose download failed for good (`failed`, `gone`) or is waiting to be tried again (pending
    with the last attempt's error), most recently updated first, with their job's model."""
    rows = conn.execute(
        'SELECT o.job_id, o.idx AS "index", o.state, o.attempts, o.error, o.updated_at, o.next_attempt_at, '
        "j.model FROM outputs o LEFT JOIN jobs j ON j.id = o.job_id "
        "WHERE o.rowid IN (SELECT rowid FROM outputs WHERE state IN ('failed', 'gone') "
        "UNION ALL SELECT rowid FROM outputs WHERE state = 'pending' AND error IS NOT NULL) "
        "ORDER BY o.updated_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [dict(r) for r in rows]


def retry_output(conn: sqlite3.Connection, job_id: str, index: int, now: float, *, who: str) -> str | None:
    """An operator's "download this output again now": a failed, gone or waiting output goes back to
    pending, due now, with its attempts reset, and the job gets an event saying so. Returns the state
    it was in (None: no such output, or it is downloading, done or deleted: nothing changed)."""
    row = conn.execute(
        "SELECT state, error FROM outputs WHERE job_id = ? AND idx = ?", (job_id, index)
    ).fetchone()
    if row is None or row["state"] not in ("failed", "gone", "pending"):
        return None
    conn.execute(
        "UPDATE outputs SET state = 'pending', attempts = 0, next_attempt_at = ?, error = NULL, updated_at = ?, "
        "claimed_by = NULL, lease_until = NULL WHERE job_id = ? AND idx = ?",
        (now, now, job_id, index),
    )
    was = row["state"] + (f": {row['error']}" if row["error"] else "")
    add_event(conn, job_id, now, who, "download_retry", None, f"output {index}: retry requested (was {was})")
    return str(row["state"])


def change_token(conn: sqlite3.Connection) -> tuple[int, int]:
    """(last job event id, last delivery id): both only grow, and every change a page shows adds one
    (a status, a registration, a download, a retry; a delivery stored). Two primary-key lookups."""
    row = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM job_events), (SELECT coalesce(max(id), 0) FROM deliveries)"
    ).fetchone()
    return int(row[0]), int(row[1])


def jobs_changed_since(conn: sqlite3.Connection, event_id: int, limit: int = CHANGES_LIMIT) -> list[str]:
    """The ids of jobs with an event after `event_id` (at most `limit`; more: the caller reloads all)."""
    rows = conn.execute(
        "SELECT DISTINCT job_id FROM (SELECT job_id FROM job_events WHERE id > ? ORDER BY id LIMIT ?)",
        (event_id, limit * 20),
    ).fetchall()
    return [r[0] for r in rows][: limit + 1]


def last_delivery_at(conn: sqlite3.Connection) -> float | None:
    """When the newest stored webhook delivery was received (ids grow with time: one index step)."""
    row = conn.execute("SELECT received_at FROM deliveries ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else None
