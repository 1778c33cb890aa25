"""PollQueue on PostgreSQL: a job is claimed for one fallback poll by one worker, under a lease, so two
replicas never poll it at once; what a poll answered is the domain's to decide (`receiver.domain.plan`).
"""

from __future__ import annotations

import time

from openrouter_video import VideoJob

from ...domain.model import ApplyResult, PollClaim
from ...domain.plan import plan_job_update, plan_not_found_upstream, plan_poll_schedule
from ._db import Conn, Database
from ._locks import lock_jobs
from .changes import change_job
from .notifications import write_outbox
from .wakeups import Wakeups

_CLAIM = (
    "WITH due AS (SELECT id FROM jobs WHERE next_poll_at <= %(now)s AND (poll_lease_until IS NULL "
    "OR poll_lease_until < %(now)s) ORDER BY next_poll_at LIMIT %(limit)s FOR NO KEY UPDATE SKIP LOCKED) "
    "UPDATE jobs AS j SET poll_claimed_by = %(worker)s, poll_lease_until = %(until)s FROM due "
    "WHERE j.id = due.id RETURNING j.id, j.submitted_at, j.created_at, j.poll_attempts, j.next_poll_at"
)


class Polls:
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

    async def claim(self, now: float, limit: int) -> list[PollClaim]:
        params = {"now": now, "limit": limit, "worker": self.worker, "until": now + self.lease}

        async def claim(conn: Conn) -> list[PollClaim]:
            rows = await (await conn.execute(_CLAIM, params)).fetchall()
            rows.sort(key=lambda r: (r["next_poll_at"], r["id"]))
            return [PollClaim(r["id"], r["submitted_at"], r["created_at"], r["poll_attempts"]) for r in rows]

        return await self._db.run(claim)

    async def apply_poll(self, job: VideoJob) -> ApplyResult:
        now = time.time()

        async def apply(conn: Conn) -> ApplyResult:
            change = await change_job(
                conn, job.id, lambda state: plan_job_update(state, job, source="poll", now=now)
            )
            assert change.result is not None
            await write_outbox(conn, job.id, now, self._notify_default)  # the job's lock is held
            return change.result

        result = await self._db.transaction(apply)
        if result.outputs_queued:
            self._wakeups.notify("downloads")
        if result.decision != "same":
            self._wakeups.jobs_changed()
        return result

    async def schedule(self, job_id: str, next_at: float | None, *, attempted: bool = True) -> None:
        """Record the poll's outcome and free the claim. A claim another worker holds (this one's lease
        ran out and it took the job over) is theirs: this outcome is dropped."""

        async def schedule(conn: Conn) -> None:
            await lock_jobs(conn, [job_id])
            holder = await (
                await conn.execute(
                    "SELECT poll_claimed_by, poll_lease_until FROM jobs WHERE id = %s", (job_id,)
                )
            ).fetchone()
            if holder is None:
                return
            taken = holder["poll_claimed_by"] not in (None, self.worker)
            if taken and (holder["poll_lease_until"] or 0) >= time.time():
                return
            await change_job(
                conn,
                job_id,
                lambda state: plan_poll_schedule(state, job_id, next_at, attempted=attempted),
                locked=True,
            )
            await conn.execute(
                "UPDATE jobs SET poll_claimed_by = NULL, poll_lease_until = NULL WHERE id = %s", (job_id,)
            )

        await self._db.transaction(schedule)

    async def not_found_upstream(self, job_id: str, detail: str) -> None:
        now = time.time()

        async def mark(conn: Conn) -> None:
            await change_job(
                conn, job_id, lambda state: plan_not_found_upstream(state, job_id, detail=detail, now=now)
            )

        await self._db.transaction(mark)
        self._wakeups.jobs_changed()
