"""DownloadQueue on PostgreSQL (the PollQueue claims alike: polls.py).

Work is claimed with `SELECT ... FOR UPDATE SKIP LOCKED` and marked with this worker's id and a lease,
in one statement: two replicas claiming at once each get different rows (a row one of them is
claiming is skipped by the other, not waited for), and a row whose lease ran out is due again. Only
the claimant records an outcome (every write checks `claimed_by`). There is no `recover`: with
replicas nobody can tell a dead claim from a live one but by its lease.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from ...domain.model import DownloadClaim
from ._db import Conn, Database
from ._locks import lock_jobs
from .notifications import write_outbox
from .wakeups import Wakeups

_CLAIMED = "job_id = %(job_id)s AND idx = %(index)s AND state = 'downloading' AND claimed_by = %(worker)s"

_CLAIM_DOWNLOADS = (
    "WITH due AS (SELECT job_id, idx FROM outputs WHERE (state = 'pending' AND next_attempt_at <= %(now)s) "
    "OR (state = 'downloading' AND lease_until < %(now)s) ORDER BY next_attempt_at LIMIT %(limit)s "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE outputs AS o SET state = 'downloading', attempts = o.attempts + 1, claimed_by = %(worker)s, "
    "lease_until = %(until)s, updated_at = %(now)s FROM due WHERE o.job_id = due.job_id AND o.idx = due.idx "
    "RETURNING o.job_id, o.idx, o.attempts - 1 AS attempts, o.next_attempt_at, "
    "(SELECT upstream FROM jobs WHERE jobs.id = o.job_id) AS upstream"
)


class Downloads:
    """DownloadQueue: outputs claimed by `worker` under a `lease` it renews."""

    def __init__(
        self,
        db: Database,
        wakeups: Wakeups,
        *,
        worker: str,
        lease: float,
        notify_default: str | None = None,
    ) -> None:
        self._db = db
        self._wakeups = wakeups
        self.worker = worker
        self.lease = lease
        self._notify_default = notify_default

    async def claim(self, now: float, limit: int) -> list[DownloadClaim]:
        params = {"now": now, "limit": limit, "worker": self.worker, "until": now + self.lease}

        async def claim(conn: Conn) -> list[DownloadClaim]:
            rows = await (await conn.execute(_CLAIM_DOWNLOADS, params)).fetchall()
            rows.sort(key=lambda r: (r["next_attempt_at"], r["job_id"], r["idx"]))
            return [
                DownloadClaim(r["job_id"], r["idx"], r["attempts"], json.loads(r["upstream"] or "{}"))
                for r in rows
            ]

        return await self._db.run(claim)

    async def renew(self, outputs: list[tuple[str, int]]) -> int:
        if not outputs:
            return 0
        params = {
            "until": time.time() + self.lease,
            "worker": self.worker,
            "jobs": [job_id for job_id, _ in outputs],
            "indexes": [index for _, index in outputs],
        }

        async def renew(conn: Conn) -> int:
            cursor = await conn.execute(
                "UPDATE outputs SET lease_until = %(until)s FROM unnest(%(jobs)s::text[], %(indexes)s::int[]) "
                "AS held(job_id, idx) WHERE outputs.job_id = held.job_id AND outputs.idx = held.idx "
                "AND outputs.state = 'downloading' AND outputs.claimed_by = %(worker)s",
                params,
            )
            return cursor.rowcount

        return await self._db.run(renew)

    async def recover(self) -> int:
        return 0  # replicas: a claim is known dead only when its lease runs out

    async def finish(self, job_id: str, index: int, *, content_key: str, size: int, sha256: str) -> bool:
        now = time.time()
        params = {
            "job_id": job_id,
            "index": index,
            "worker": self.worker,
            "key": content_key,
            "size": size,
            "sha256": sha256,
            "now": now,
            "detail": f"output {index}: {size} bytes, sha256 {sha256}",
        }
        return await self._changed(
            "WITH done AS (UPDATE outputs SET state = 'done', bytes = %(size)s, sha256 = %(sha256)s, "
            "content_key = %(key)s, error = NULL, updated_at = %(now)s, claimed_by = NULL, lease_until = NULL "
            f"WHERE {_CLAIMED} RETURNING job_id) "
            "INSERT INTO job_events (job_id, at, source, kind, detail) "
            "SELECT job_id, %(now)s, 'fetcher', 'downloaded', %(detail)s FROM done",
            params,
        )

    async def retry(
        self, job_id: str, index: int, *, next_at: float, error: str, count_attempt: bool = True
    ) -> bool:
        params = {
            "job_id": job_id,
            "index": index,
            "worker": self.worker,
            "next_at": next_at,
            "error": error,
            "now": time.time(),
            "give_back": 0 if count_attempt else 1,
        }
        # The NOTIFY: the other replicas' fetchers take the new due time into their sleep.
        return await self._write(
            "WITH again AS (UPDATE outputs SET state = 'pending', next_attempt_at = %(next_at)s, error = %(error)s, "
            "updated_at = %(now)s, attempts = attempts - %(give_back)s, claimed_by = NULL, lease_until = NULL "
            f"WHERE {_CLAIMED} RETURNING job_id) SELECT pg_notify('downloads', '') FROM again",
            params,
        )

    async def end(self, job_id: str, index: int, *, state: Literal["gone", "failed"], error: str) -> bool:
        if state not in ("gone", "failed"):
            raise ValueError(f"an output ends gone or failed, not {state!r}")
        now = time.time()
        params = {
            "job_id": job_id,
            "index": index,
            "worker": self.worker,
            "state": state,
            "error": error,
            "now": now,
            "kind": f"download_{state}",
            "detail": f"output {index}: {error}",
        }
        return await self._changed(
            "WITH ended AS (UPDATE outputs SET state = %(state)s, error = %(error)s, updated_at = %(now)s, "
            f"claimed_by = NULL, lease_until = NULL WHERE {_CLAIMED} RETURNING job_id) "
            "INSERT INTO job_events (job_id, at, source, kind, detail) "
            "SELECT job_id, %(now)s, 'fetcher', %(kind)s, %(detail)s FROM ended",
            params,
        )

    async def _changed(self, sql: str, params: dict[str, Any]) -> bool:
        """An output's end (done, gone, failed), under its job's lock: the job's notification is written
        in the same transaction once this was its last output (two outputs ending at once on two
        replicas are serialized by the lock, so one of them sees both final); the waits on the job
        wake, on every replica."""

        async def write(conn: Conn) -> bool:
            await lock_jobs(conn, [params["job_id"]])
            if (await conn.execute(sql, params)).rowcount == 0:
                return False
            await write_outbox(conn, params["job_id"], params["now"], self._notify_default)
            return True

        written = await self._db.transaction(write)
        if written:
            self._wakeups.jobs_changed()
        return written

    async def _write(self, sql: str, params: dict[str, object]) -> bool:
        async def write(conn: Conn) -> bool:
            return (await conn.execute(sql, params)).rowcount > 0

        return await self._db.run(write)

    async def content_key(self, job_id: str, index: int) -> str | None:
        async def read(conn: Conn) -> str | None:
            row = await (
                await conn.execute(
                    "SELECT content_key FROM outputs WHERE job_id = %s AND idx = %s AND state = 'done'",
                    (job_id, index),
                )
            ).fetchone()
            return row["content_key"] if row else None

        return await self._db.run(read, idempotent=True)

    async def depth(self) -> int:
        async def read(conn: Conn) -> int:
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM outputs WHERE state IN ('pending', 'downloading')"
                )
            ).fetchone()
            return int(row["n"]) if row else 0

        return await self._db.run(read, idempotent=True)

    async def next_due(self) -> float | None:
        async def read(conn: Conn) -> float | None:
            row = await (
                await conn.execute(
                    "SELECT least((SELECT min(next_attempt_at) FROM outputs WHERE state = 'pending'), "
                    "(SELECT min(lease_until) FROM outputs WHERE state = 'downloading')) AS due"
                )
            ).fetchone()
            return row["due"] if row else None

        return await self._db.run(read, idempotent=True)

    async def live_claims(self, now: float) -> list[tuple[str, int]]:
        async def read(conn: Conn) -> list[tuple[str, int]]:
            rows = await (
                await conn.execute(
                    "SELECT job_id, idx FROM outputs WHERE state = 'downloading' AND lease_until >= %s",
                    (now,),
                )
            ).fetchall()
            return [(row["job_id"], row["idx"]) for row in rows]

        return await self._db.run(read, idempotent=True)
