"""Per-job transaction locks: every transaction that writes several rows of a job takes its job's lock
first, and a transaction touching several jobs takes them in one global order (sorted keys).

Why not only the job rows' own locks: a job may not exist yet (two replicas applying its first
webhooks would both INSERT it), and a batch of deliveries visits its jobs in delivery order, so two
appliers could each hold one job and wait for the other's. An advisory lock exists before the row
does, and sorted acquisition cannot deadlock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ._db import Conn


def job_lock_key(job_id: str) -> int:
    digest = hashlib.blake2b(b"orv-job:" + job_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_jobs(conn: Conn, job_ids: Iterable[str]) -> None:
    """Hold the locks of `job_ids` until the transaction ends (waiting for their holders)."""
    keys = sorted({job_lock_key(job_id) for job_id in job_ids})
    if keys:
        # unnest yields the array in order, so the locks are taken in that order.
        await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (keys,))
