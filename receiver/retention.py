"""Retention: what the receiver deletes once it is old enough, applied by the app's periodic sweep and
by `openrouter-video prune`.

Three independent policies, each in days (unset: kept forever):

- videos (RECEIVER_RETENTION_DAYS): the files of outputs downloaded longer ago than that. The output
  record stays, in state `deleted`; its `updated_at` says when and its `error` why.
- job records (RECEIVER_RECORD_RETENTION_DAYS): jobs not updated for that long, with their events,
  outputs and any files left. Never a job with an output still pending or downloading, nor one the
  fallback is still polling.
- stored deliveries (RECEIVER_DELIVERY_RETENTION_DAYS): deliveries received that long ago. Never a
  pending one (acknowledged, not applied yet).

The database part runs in one transaction (the caller's); the files are removed after it committed,
so a crash in between leaves a file no record points to, never a record pointing to no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from .records import add_event

DAY = 86400.0


@dataclass(frozen=True)
class Policy:
    video_days: float | None = None
    record_days: float | None = None
    delivery_days: float | None = None

    @property
    def empty(self) -> bool:
        return self.video_days is None and self.record_days is None and self.delivery_days is None


@dataclass
class Pruned:
    """What one pass removed (or, in a dry run, would remove)."""

    videos: int = 0  # outputs whose file was deleted (record kept, state `deleted`)
    jobs: int = 0  # job records deleted
    deliveries: int = 0  # stored deliveries deleted
    delivery_bytes: int = 0  # their bodies and headers (the database file keeps the pages for reuse)
    files: list[str] = field(default_factory=list)  # video files to remove once committed
    freed_bytes: int = 0  # of those files, set by remove_files

    @property
    def anything(self) -> bool:
        return bool(self.videos or self.jobs or self.deliveries)

    def summary(self) -> str:
        return (
            f"{self.videos} video(s) deleted, {self.jobs} job record(s), {self.deliveries} stored "
            f"deliveries ({self.delivery_bytes} bytes); {self.freed_bytes} bytes of video freed"
        )


def prune(conn: sqlite3.Connection, policy: Policy, now: float) -> Pruned:
    """Apply `policy` to the database (inside the caller's transaction); the files to remove after."""
    pruned = Pruned()
    if policy.video_days is not None:
        cutoff = now - policy.video_days * DAY
        rows = conn.execute(
            "SELECT job_id, idx, path FROM outputs WHERE state = 'done' AND updated_at < ?", (cutoff,)
        ).fetchall()
        why = (
            f"deleted by retention: downloaded over {policy.video_days:g} days ago (RECEIVER_RETENTION_DAYS)"
        )
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
                pruned.files.append(row["path"])
        pruned.videos = len(rows)
    if policy.record_days is not None:
        cutoff = now - policy.record_days * DAY
        jobs = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM jobs WHERE updated_at < ? AND next_poll_at IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM outputs o WHERE o.job_id = jobs.id AND o.state IN ('pending', 'downloading'))",
                (cutoff,),
            )
        ]
        for job_id in jobs:
            pruned.files += [
                r[0]
                for r in conn.execute(
                    "SELECT path FROM outputs WHERE job_id = ? AND path IS NOT NULL", (job_id,)
                )
            ]
            conn.execute("DELETE FROM outputs WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        pruned.jobs = len(jobs)
    if policy.delivery_days is not None:
        cutoff = now - policy.delivery_days * DAY
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
    for path in pruned.files:
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
            if pruned.files:
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
