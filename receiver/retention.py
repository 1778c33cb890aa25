"""Retention applied to the SQLite store, by the app's periodic sweep and by `openrouter-video prune`
(the policy itself: receiver.domain.retention).

The database part runs in one transaction (the caller's); the files are removed after it committed,
so a crash in between leaves a file no record points to, never a record pointing to no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from typing import Protocol

import structlog

from .domain.retention import Policy, Pruned
from .records import add_event

__all__ = ["Policy", "Pruned", "file_sizes", "prune", "remove_files", "run_sweeps"]


def prune(conn: sqlite3.Connection, policy: Policy, now: float) -> Pruned:
    """Apply `policy` to the database (inside the caller's transaction); the files to remove after."""
    pruned = Pruned()
    if (cutoff := policy.video_cutoff(now)) is not None:
        rows = conn.execute(
            "SELECT job_id, idx, path FROM outputs WHERE state = 'done' AND updated_at < ?", (cutoff,)
        ).fetchall()
        why = policy.video_deleted_reason()
        for row in rows:
            conn.execute(
                "UPDATE outputs SET state = 'deleted', path = NULL, error = ?, updated_at = ? "
                "WHERE job_id = ? AND idx = ?",
                (why, now, row["job_id"], row["idx"]),
            )
            add_event(
                conn, row["job_id"], now, "retention", "video_deleted", None, f"output {row['idx']}: {why}"
            )
            if row["path"]:
                pruned.content_keys.append(row["path"])  # paths until migration 5
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
        for job_id in jobs:
            pruned.content_keys += [
                r[0]
                for r in conn.execute(
                    "SELECT path FROM outputs WHERE job_id = ? AND path IS NOT NULL", (job_id,)
                )
            ]
            conn.execute("DELETE FROM outputs WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
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


def file_sizes(paths: list[str]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += os.stat(path).st_size
    return total


def remove_files(pruned: Pruned) -> Pruned:
    """Delete the pruned video files (and their job folders once empty); count the bytes freed."""
    for path in pruned.content_keys:
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            continue
        pruned.freed_bytes += size
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))  # only if empty
    return pruned


async def run_sweeps(store: SweepStore, policy: Policy, interval: float) -> None:
    """The app's periodic sweep: once at start, then every `interval` seconds."""
    log = structlog.get_logger("receiver.retention")
    while True:
        try:
            pruned = await store.prune(policy, time.time())
            if pruned.content_keys:
                await asyncio.to_thread(remove_files, pruned)
            if pruned.anything:
                log.info(
                    "retention.swept",
                    videos=pruned.videos,
                    jobs=pruned.jobs,
                    deliveries=pruned.deliveries,
                    freed_bytes=pruned.freed_bytes,
                )
        except Exception:  # a failing sweep must not end the sweeps for good
            log.exception("retention.crashed")
        await asyncio.sleep(interval)


class SweepStore(Protocol):
    async def prune(self, policy: Policy, now: float) -> Pruned: ...
