"""Applying stored deliveries on PostgreSQL: the rest of the DeliveryLog.

Pending deliveries are claimed with `SELECT ... FOR UPDATE SKIP LOCKED` in the transaction that
applies them: each replica's applier takes a different batch, and a crash gives its batch back at
once (the rollback ends the locks; no lease to wait for). What a body is and what it does to its job
are the domain's decisions (`plan_delivery`, `plan_job_update`); this stores them (`changes.py`).
Two appliers may hold deliveries of one job in different batches, so a later one can be applied
first; the forward-only plan makes the order harmless (a status never moves back; the earlier event
is kept in the job's history as what it was), as it does for OpenRouter's own out-of-order sends.

A query on any replica must show an acknowledged delivery's effect: `apply_pending_for_job` finds the
job's pending deliveries by its id in their bodies (as the SQLite store does), waiting for rows another
replica's applier holds, so once it returns the delivery is applied here or there.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from ...domain.events import DeliveryPlan, plan_delivery
from ...domain.model import AppliedBatch, AppliedDelivery
from ...domain.plan import plan_job_update
from ._db import Conn, Database
from ._locks import lock_jobs
from .changes import change_job
from .deliveries import DeliveryPages
from .notifications import write_outbox
from .submissions import link_submission
from .wakeups import Wakeups

_TO_APPLY = "id, idempotency_key, received_at, body, submission_id"


class DeliveryLog(DeliveryPages):
    def __init__(self, db: Database, wakeups: Wakeups, *, notify_default: str | None = None) -> None:
        super().__init__(db, wakeups)
        self._notify_default = notify_default  # RECEIVER_NOTIFY_URL: jobs without their own are told there

    async def apply_pending(self, limit: int, *, isolate: bool = False) -> AppliedBatch:
        async def apply(conn: Conn) -> AppliedBatch:
            started = time.perf_counter()
            rows = await (
                await conn.execute(
                    f"SELECT {_TO_APPLY} FROM deliveries WHERE state = 'pending' ORDER BY id LIMIT %s "
                    "FOR UPDATE SKIP LOCKED",
                    (limit,),
                )
            ).fetchall()
            applied = await apply_rows(
                conn, rows, time.time(), isolate=isolate, notify_default=self._notify_default
            )
            return AppliedBatch(applied, time.perf_counter() - started)

        batch = await self._db.transaction(apply)
        self._queued(batch.deliveries)
        return batch

    async def apply_pending_for_job(self, job_id: str) -> list[AppliedDelivery]:
        async def apply(conn: Conn) -> list[AppliedDelivery]:
            # FOR UPDATE without SKIP LOCKED: a row another applier holds is waited for, then seen
            # applied (READ COMMITTED re-checks `state` on the row's new version) and left out.
            rows = await (
                await conn.execute(
                    f"SELECT {_TO_APPLY} FROM deliveries WHERE state = 'pending' "
                    "AND position(%s::bytea in body) > 0 ORDER BY id FOR UPDATE",
                    (job_id.encode("utf-8", "surrogatepass"),),
                )
            ).fetchall()
            mine = []
            for row in rows:
                plan = plan_delivery(bytes(row["body"]))
                if plan.job_id == job_id:  # not merely named in another job's event (a prompt, say)
                    mine.append((row, plan))
            return await _apply_planned(
                conn, mine, time.time(), isolate=False, notify_default=self._notify_default
            )

        return self._queued(await self._db.transaction(apply))

    async def reprocess(self, delivery_ids: list[int] | None) -> list[AppliedDelivery]:
        if delivery_ids:
            where, params = "state != 'applied' AND id = ANY(%s)", (delivery_ids,)
        else:
            where, params = "state IN ('failed', 'pending')", ()  # type: ignore[assignment]

        async def apply(conn: Conn) -> list[AppliedDelivery]:
            rows = await (
                await conn.execute(
                    f"SELECT {_TO_APPLY} FROM deliveries WHERE {where} ORDER BY id FOR UPDATE SKIP LOCKED",
                    params,
                )
            ).fetchall()
            return await apply_rows(
                conn, rows, time.time(), isolate=True, notify_default=self._notify_default
            )

        return self._queued(await self._db.transaction(apply))

    def _queued(self, applied: list[AppliedDelivery]) -> list[AppliedDelivery]:
        """Wake this process's fetcher and waits at once (the other replicas' get the NOTIFYs sent
        at commit)."""
        if any(a.outputs_queued for a in applied):
            self._wakeups.notify("downloads")
        if applied:
            self._wakeups.notify("jobs")
        return applied


async def apply_rows(
    conn: Conn,
    rows: list[dict[str, Any]],
    now: float,
    *,
    isolate: bool,
    notify_default: str | None = None,
) -> list[AppliedDelivery]:
    planned = [(row, plan_delivery(bytes(row["body"]))) for row in rows]
    return await _apply_planned(conn, planned, now, isolate=isolate, notify_default=notify_default)


async def _apply_planned(
    conn: Conn,
    planned: list[tuple[dict[str, Any], DeliveryPlan]],
    now: float,
    *,
    isolate: bool,
    notify_default: str | None,
) -> list[AppliedDelivery]:
    # Every job of the batch locked at once, in one order: two appliers never wait on each other.
    await lock_jobs(conn, [plan.job_id for _, plan in planned if plan.job is not None and plan.job_id])
    applied = []
    for row, plan in planned:
        if not isolate:
            applied.append(await _apply_one(conn, row, plan, now, notify_default))
            continue
        try:
            async with conn.transaction():  # a SAVEPOINT: this delivery alone is rolled back
                applied.append(await _apply_one(conn, row, plan, now, notify_default))
        except psycopg.OperationalError:
            raise  # the database failing, not this delivery
        except Exception as exc:
            error = f"internal error while applying: {type(exc).__name__}: {str(exc)[:200]}"
            await conn.execute(
                "UPDATE deliveries SET state = 'failed', error = %s, applied_at = %s WHERE id = %s",
                (error, now, row["id"]),
            )
            applied.append(
                AppliedDelivery(
                    row["id"], row["idempotency_key"], row["received_at"], None, None, None, error
                )
            )
    if applied:
        # Delivered at commit, to every replica: their long-polls and event streams look again. In the
        # transaction, not announced after it: a NOTIFY of its own from the pool between two batches
        # changed how two appliers' batches interleave (see test_postgres_apply's two appliers).
        await conn.execute("SELECT pg_notify('jobs', '')")
    return applied


async def _apply_one(
    conn: Conn, row: dict[str, Any], plan: DeliveryPlan, now: float, notify_default: str | None
) -> AppliedDelivery:
    decision, queued = None, 0
    if plan.job is not None:
        job = plan.job
        # The job's clock is when the webhook arrived, not when it was applied.
        change = await change_job(
            conn,
            job.id,
            lambda state: plan_job_update(
                state, job, source="webhook", now=row["received_at"], delivery_id=row["id"]
            ),
            locked=True,
        )
        if change.result is not None:
            decision, queued = change.result.decision, change.result.outputs_queued
        if row["submission_id"] is not None:  # the job's lock is held (taken for the batch)
            await link_submission(conn, row["submission_id"], job.id, job.model, row["received_at"])
        # After the link: a job tied to its submission only now may have its notify_url only now.
        await write_outbox(conn, job.id, now, notify_default)
    await conn.execute(
        "UPDATE deliveries SET state = %s, error = %s, job_id = %s, event_type = %s, status = %s, applied_at = %s "
        "WHERE id = %s",
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
