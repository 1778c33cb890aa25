"""Retention applied to the stores: by the app's periodic sweep and by `openrouter-video prune`.

The records go first, in one transaction of the store (`Jobs.prune`); the content they held is
deleted after that committed, so a crash in between leaves content no record points to, never a
record pointing to no content. The policy itself: receiver.domain.retention.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from ..domain.retention import Policy, Pruned
from ..settings import Settings
from ..storage.base import Stores

log = structlog.get_logger("receiver.retention")


def retention_policy(settings: Settings) -> Policy:
    return Policy(
        video_days=settings.retention_days,
        record_days=settings.record_retention_days,
        delivery_days=settings.delivery_retention_days,
    )


async def prune_once(stores: Stores, policy: Policy, now: float, *, dry_run: bool = False) -> Pruned:
    """One pass: the records pruned, then the content they held deleted (bytes freed counted).
    `dry_run`: nothing removed; the bytes that would be freed are measured."""
    pruned = await stores.jobs.prune(policy, now, dry_run=dry_run)
    if not pruned.content_keys:
        return pruned
    if dry_run:
        sizes = await asyncio.gather(*(stores.content.stat(key) for key in pruned.content_keys))
        pruned.freed_bytes = sum(info.size for info in sizes if info is not None)
    else:
        pruned.freed_bytes = await stores.content.delete(pruned.content_keys)
    return pruned


async def run_sweeps(stores: Stores, policy: Policy, interval: float) -> None:
    """The app's periodic sweep: once at start, then every `interval` seconds."""
    while True:
        try:
            pruned = await prune_once(stores, policy, time.time())
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
