"""Submissions on PostgreSQL: the `Submissions` interface, and the link the applier makes. What a
submission may become is decided in `receiver.domain.submissions`; this reads (the row locked),
asks, and stores. A submission that gets its job registers the job in the same transaction."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ...domain.budget import BudgetCheck, OverBudget, SpendFact, refusal, spend_fact
from ...domain.model import SubmissionRecord
from ...domain.submissions import (
    SUBMITTED,
    Outcome,
    is_submission_id,
    plan_abandoned,
    plan_link,
    plan_outcome,
    plan_submitted_job,
)
from ._db import Conn, Database
from ._locks import lock_jobs
from .changes import change_job
from .notifications import write_outbox

_COLUMNS = tuple(f.name for f in dataclasses.fields(SubmissionRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM submissions"
_INSERT = (
    f"INSERT INTO submissions ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
    "ON CONFLICT ((coalesce(owner, '')), idempotency_key) DO NOTHING RETURNING id"
)
# An idempotency key is unique per owner (the index on coalesce(owner, ''), idempotency_key).
_BY_KEY = f"{_SELECT} WHERE coalesce(owner, '') = %s AND idempotency_key = %s"


# pg_advisory_xact_lock key of the capped submits (any constant no other lock of the receiver uses):
# held from the spend read to the commit of the insert, so two submits (on any replicas) can never
# both pass a cap only one fits. READ COMMITTED: the read after the lock sees every earlier commit.
BUDGET_LOCK = 0x6F72_7663_6275_6467  # "orvcbudg"
# The spend of a period (see domain.budget): every submission recorded in it, with its job's status
# and cost; and every job created in it that no submission has (registered, or known by webhook only).
_SPEND = """
    SELECT s.created_at AS at, s.model, s.state AS submission_state, s.estimated_cost AS estimate,
        j.status AS job_status, j.cost AS job_cost, s.owner
    FROM submissions s LEFT JOIN jobs j ON j.id = s.job_id
    WHERE s.created_at >= %(since)s AND s.created_at < %(until)s
    UNION ALL
    SELECT j.created_at, j.model, NULL, NULL, j.status, j.cost, j.owner
    FROM jobs j
    WHERE j.created_at >= %(since)s AND j.created_at < %(until)s
        AND NOT EXISTS (SELECT 1 FROM submissions s WHERE s.job_id = j.id)
"""


async def _read_spend(conn: Conn, since: float, until: float) -> list[SpendFact]:
    rows = await (await conn.execute(_SPEND, {"since": since, "until": until})).fetchall()
    return [spend_fact(row) for row in rows]


def _record(row: dict[str, Any] | None) -> SubmissionRecord | None:
    return SubmissionRecord(**row) if row is not None else None


async def _locked(conn: Conn, submission_id: str) -> SubmissionRecord | None:
    row = await (await conn.execute(f"{_SELECT} WHERE id = %s FOR UPDATE", (submission_id,))).fetchone()
    return _record(row)


async def _store(conn: Conn, record: SubmissionRecord) -> None:
    await conn.execute(
        "UPDATE submissions SET state = %s, job_id = %s, upstream_status = %s, error = %s, updated_at = %s "
        "WHERE id = %s",
        (record.state, record.job_id, record.upstream_status, record.error, record.updated_at, record.id),
    )


async def _settle(
    conn: Conn,
    updated: SubmissionRecord,
    *,
    how: str,
    now: float,
    first_poll_at: float,
    notify_default: str | None,
) -> None:
    """Store a decided submission; one that now has its job registers that job (its lock is held),
    and a job that already ended is told now that it has its notify_url."""
    await _store(conn, updated)
    if updated.state == SUBMITTED and updated.job_id is not None:
        await change_job(
            conn,
            updated.job_id,
            lambda state: plan_submitted_job(state, updated, how=how, now=now, first_poll_at=first_poll_at),
            locked=True,
        )
        await write_outbox(conn, updated.job_id, now, notify_default)


async def link_submission(
    conn: Conn, submission_id: str, job_id: str, job_model: str | None, now: float
) -> None:
    """A webhook named this submission (the caller holds the job's lock): tie it to the job if it was
    waiting for one."""
    current = await _locked(conn, submission_id)
    updated = plan_link(current, job_id, job_model, now) if current is not None else None
    if updated is None:
        return
    await _store(conn, updated)
    await change_job(
        conn,
        job_id,
        lambda state: plan_submitted_job(
            state, updated, how="tied back by the job's webhook", now=now, first_poll_at=now
        ),
        locked=True,
    )


class Submissions:
    def __init__(self, db: Database, *, notify_default: str | None = None) -> None:
        self._db = db
        self._notify_default = notify_default

    async def begin(
        self, submission: SubmissionRecord, budget: BudgetCheck | None = None
    ) -> tuple[SubmissionRecord, bool]:
        key = (submission.owner or "", submission.idempotency_key)

        async def begin(conn: Conn) -> tuple[SubmissionRecord, bool]:
            if budget is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (BUDGET_LOCK,))
                row = await (await conn.execute(_BY_KEY, key)).fetchone()
                if row is not None:
                    return SubmissionRecord(**row), False
                why = refusal(budget, await _read_spend(conn, budget.since, float("inf")))
                if why is not None:
                    raise OverBudget(why)
            inserted = await (
                await conn.execute(_INSERT, [getattr(submission, n) for n in _COLUMNS])
            ).fetchone()
            if inserted is not None:
                return submission, True
            row = await (await conn.execute(_BY_KEY, key)).fetchone()
            stored = _record(row)
            assert stored is not None  # the conflict was on this key, and submissions are never deleted
            return stored, False  # (but for a forgotten one: then the insert above would have won)

        return await self._db.transaction(begin)

    async def spend(self, since: float, until: float) -> list[SpendFact]:
        return await self._db.run(lambda conn: _read_spend(conn, since, until), idempotent=True)

    async def get(
        self, ref: str, *, by_key: bool = False, owner: str | None = None
    ) -> SubmissionRecord | None:
        async def read(conn: Conn) -> SubmissionRecord | None:
            if is_submission_id(ref) and not by_key:
                row = await (await conn.execute(f"{_SELECT} WHERE id = %s", (ref,))).fetchone()
                if row is not None:
                    return _record(row)
            row = await (await conn.execute(_BY_KEY, (owner or "", ref))).fetchone()
            return _record(row)

        return await self._db.run(read, idempotent=True)

    async def finish(
        self, submission_id: str, outcome: Outcome, *, first_poll_at: float
    ) -> SubmissionRecord | None:
        now = time.time()

        async def finish(conn: Conn) -> SubmissionRecord | None:
            if outcome.job_id is not None:  # the job's lock first, as the applier takes them: no deadlock
                await lock_jobs(conn, [outcome.job_id])
            current = await _locked(conn, submission_id)
            if current is None:
                return None
            updated = plan_outcome(current, outcome, now)
            if updated is None:
                return current
            await _settle(
                conn,
                updated,
                how="submitted through the receiver",
                now=now,
                first_poll_at=first_poll_at,
                notify_default=self._notify_default,
            )
            return updated

        return await self._db.transaction(finish)

    async def forget(self, submission_id: str) -> None:
        async def forget(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM submissions WHERE id = %s AND state = 'submitting'", (submission_id,)
            )

        await self._db.run(forget)

    async def abandon(self, older_than: float | None) -> int:
        now = time.time()

        async def abandon(conn: Conn) -> int:
            rows = await (
                await conn.execute(
                    f"{_SELECT} WHERE state = 'submitting' AND created_at < %s FOR UPDATE SKIP LOCKED",
                    (older_than if older_than is not None else float("inf"),),
                )
            ).fetchall()
            count = 0
            for row in rows:
                current = _record(row)
                updated = plan_abandoned(current, now) if current is not None else None
                if updated is not None:
                    await _store(conn, updated)
                    count += 1
            return count

        return await self._db.transaction(abandon)
