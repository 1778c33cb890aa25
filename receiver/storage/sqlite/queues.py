"""The download queue and the fallback poll queue in SQLite: work claimed by a worker under a lease.

A claim is made in the writer's transaction (one writer per process; SQLite's write lock between
processes), so two workers never claim the same row while its lease is live; a lease that ran out
makes the row due again. Only the claimant records an outcome.
"""

from __future__ import annotations

import json
import sqlite3

from ...domain.model import DownloadClaim, PollClaim
from ...domain.plan import plan_poll_schedule
from .jobs import add_event, read_state, store_change
from .notifications import write_outbox

_CLAIMED = "WHERE job_id = ? AND idx = ? AND state = 'downloading' AND claimed_by = ?"


# -- downloads ---------------------------------------------------------------------------------


def claim_downloads(
    conn: sqlite3.Connection, now: float, limit: int, *, worker: str, lease: float
) -> list[DownloadClaim]:
    """Claim up to `limit` due outputs for `worker` until `now + lease`, with their job's upstream view.

    Due: pending and past their next attempt, or downloading under a lease that ran out (the worker
    that held it died or stalled).
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
    return [
        DownloadClaim(r["job_id"], r["idx"], r["attempts"], json.loads(r["upstream"] or "{}")) for r in rows
    ]


def renew_claims(conn: sqlite3.Connection, outputs: list[tuple[str, int]], worker: str, until: float) -> int:
    """Extend the leases `worker` holds on `outputs` (those it is downloading); return how many it holds."""
    held = 0
    for job_id, index in outputs:
        held += conn.execute(
            f"UPDATE outputs SET lease_until = ? {_CLAIMED}", (until, job_id, index, worker)
        ).rowcount
    return held


def release_claims_of_others(conn: sqlite3.Connection, worker: str, now: float) -> int:
    """End the download leases of every other worker at once. Only for a store one process serves alone
    (SQLite under its data-dir lock): a previous run's claims are then known to be dead."""
    return conn.execute(
        "UPDATE outputs SET lease_until = ? WHERE state = 'downloading' AND claimed_by IS NOT ? ",
        (now - 1, worker),
    ).rowcount


def finish_download(
    conn: sqlite3.Connection,
    job_id: str,
    index: int,
    *,
    content_key: str,
    size: int,
    sha256: str,
    now: float,
    worker: str,
    notify_default: str | None = None,
) -> bool:
    """Record a download done; False (nothing recorded) when `worker` no longer holds the claim. The
    last output of a job stored writes the job's notification, in this transaction."""
    updated = conn.execute(
        "UPDATE outputs SET state = 'done', bytes = ?, sha256 = ?, content_key = ?, error = NULL, updated_at = ?, "
        f"claimed_by = NULL, lease_until = NULL {_CLAIMED}",
        (size, sha256, content_key, now, job_id, index, worker),
    ).rowcount
    if updated:
        detail = f"output {index}: {size} bytes, sha256 {sha256}"
        add_event(conn, job_id, now, "fetcher", "downloaded", None, detail)
        write_outbox(conn, job_id, now, notify_default)
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
    """Put a claimed output back in the queue for `next_at`; `count_attempt=False` gives the attempt back."""
    return bool(
        conn.execute(
            "UPDATE outputs SET state = 'pending', next_attempt_at = ?, error = ?, updated_at = ?, "
            f"attempts = attempts - ?, claimed_by = NULL, lease_until = NULL {_CLAIMED}",
            (next_at, error, now, 0 if count_attempt else 1, job_id, index, worker),
        ).rowcount
    )


def end_download(
    conn: sqlite3.Connection,
    job_id: str,
    index: int,
    *,
    state: str,
    error: str,
    now: float,
    worker: str,
    notify_default: str | None = None,
) -> bool:
    """A final failure: `gone` or `failed` (see receiver.domain.downloads)."""
    if state not in ("gone", "failed"):
        raise ValueError(f"an output ends gone or failed, not {state!r}")
    updated = conn.execute(
        f"UPDATE outputs SET state = ?, error = ?, updated_at = ?, claimed_by = NULL, lease_until = NULL {_CLAIMED}",
        (state, error, now, job_id, index, worker),
    ).rowcount
    if updated:
        add_event(conn, job_id, now, "fetcher", f"download_{state}", None, f"output {index}: {error}")
        write_outbox(conn, job_id, now, notify_default)  # every output final now: the job is told
    return bool(updated)


def content_key(conn: sqlite3.Connection, job_id: str, index: int) -> str | None:
    row = conn.execute(
        "SELECT content_key FROM outputs WHERE job_id = ? AND idx = ? AND state = 'done'", (job_id, index)
    ).fetchone()
    return row[0] if row else None


def queue_depth(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute("SELECT count(*) FROM outputs WHERE state IN ('pending', 'downloading')").fetchone()[0]
    )


def live_claims(conn: sqlite3.Connection, now: float) -> list[tuple[str, int]]:
    """Outputs downloading under a lease that has not run out (any worker's)."""
    rows = conn.execute(
        "SELECT job_id, idx FROM outputs WHERE state = 'downloading' AND lease_until >= ?", (now,)
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def next_download_at(conn: sqlite3.Connection) -> float | None:
    """When the next output falls due: a pending one's next attempt, or a lease running out."""
    row = conn.execute(
        "SELECT min(coalesce((SELECT min(next_attempt_at) FROM outputs WHERE state = 'pending'), 1e300), "
        "coalesce((SELECT min(lease_until) FROM outputs WHERE state = 'downloading'), 1e300))"
    ).fetchone()
    return float(row[0]) if row[0] < 1e300 else None


# -- fallback polls ----------------------------------------------------------------------------


def claim_polls(
    conn: sqlite3.Connection, now: float, limit: int, *, worker: str, lease: float
) -> list[PollClaim]:
    """Claim up to `limit` jobs due for a poll (past `next_poll_at`, under no live claim) for `worker`
    until `now + lease`."""
    rows = conn.execute(
        "SELECT id, submitted_at, created_at, poll_attempts FROM jobs WHERE next_poll_at IS NOT NULL "
        "AND next_poll_at <= ? AND (poll_lease_until IS NULL OR poll_lease_until < ?) ORDER BY next_poll_at LIMIT ?",
        (now, now, limit),
    ).fetchall()
    for row in rows:
        conn.execute(
            "UPDATE jobs SET poll_claimed_by = ?, poll_lease_until = ? WHERE id = ?",
            (worker, now + lease, row["id"]),
        )
    return [PollClaim(r["id"], r["submitted_at"], r["created_at"], r["poll_attempts"]) for r in rows]


def schedule_poll(
    conn: sqlite3.Connection, job_id: str, next_at: float | None, *, attempted: bool, worker: str, now: float
) -> None:
    """The next poll and the claim freed; dropped when another worker holds a live claim on the job."""
    holder = conn.execute(
        "SELECT poll_claimed_by, poll_lease_until FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if holder is None:
        return
    if holder[0] not in (None, worker) and holder[1] is not None and holder[1] >= now:
        return
    current = read_state(conn, job_id, outputs=False)
    store_change(conn, plan_poll_schedule(current, job_id, next_at, attempted=attempted))
    conn.execute("UPDATE jobs SET poll_claimed_by = NULL, poll_lease_until = NULL WHERE id = ?", (job_id,))
