"""The retention policy (receiver.domain.retention) applied to the SQLite records, in the caller's
transaction; the caller deletes `Pruned.content_keys` from the content store once it committed."""

from __future__ import annotations

import sqlite3

from ...domain.retention import Policy, Pruned
from .jobs import add_event, delete_jobs


def prune(conn: sqlite3.Connection, policy: Policy, now: float, *, dry_run: bool = False) -> Pruned:
    """`dry_run`: the same statements in a savepoint rolled back (what would go; nothing does)."""
    if not dry_run:
        return _prune(conn, policy, now)
    conn.execute("SAVEPOINT dry_run")
    try:
        return _prune(conn, policy, now)
    finally:
        conn.execute("ROLLBACK TO dry_run")
        conn.execute("RELEASE dry_run")


def _prune(conn: sqlite3.Connection, policy: Policy, now: float) -> Pruned:
    pruned = Pruned()
    if (cutoff := policy.video_cutoff(now)) is not None:
        rows = conn.execute(
            "SELECT job_id, idx, content_key FROM outputs WHERE state = 'done' AND updated_at < ?", (cutoff,)
        ).fetchall()
        why = policy.video_deleted_reason()
        for row in rows:
            conn.execute(
                "UPDATE outputs SET state = 'deleted', content_key = NULL, error = ?, updated_at = ? "
                "WHERE job_id = ? AND idx = ?",
                (why, now, row["job_id"], row["idx"]),
            )
            add_event(
                conn, row["job_id"], now, "retention", "video_deleted", None, f"output {row['idx']}: {why}"
            )
            if row["content_key"]:
                pruned.content_keys.append(row["content_key"])
        pruned.videos = len(rows)
    if (cutoff := policy.record_cutoff(now)) is not None:
        jobs = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM jobs WHERE updated_at < ? AND next_poll_at IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM outputs o WHERE o.job_id = jobs.id AND o.state IN ('pending', 'downloading'))",
                (cutoff,),
            )
        ]
        pruned.content_keys += delete_jobs(conn, jobs)
        pruned.jobs = len(jobs)
    if (cutoff := policy.delivery_cutoff(now)) is not None:
        count, size = conn.execute(
            "SELECT count(*), coalesce(sum(length(body) + length(headers)), 0) FROM deliveries "
            "WHERE state != 'pending' AND received_at < ?",
            (cutoff,),
        ).fetchone()
        conn.execute("DELETE FROM deliveries WHERE state != 'pending' AND received_at < ?", (cutoff,))
        pruned.deliveries, pruned.delivery_bytes = count, size
    return pruned
