"""Submissions in SQLite: plain functions over a connection (inside the writer's transaction), and
the `Submissions` interface on the file. What a submission may become is decided in
`receiver.domain.submissions`; this reads, asks, and stores."""

from __future__ import annotations

import dataclasses
import sqlite3
import time

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
from ._file import SQLiteFile
from .jobs import read_state, store_change
from .notifications import write_outbox

_COLUMNS = tuple(f.name for f in dataclasses.fields(SubmissionRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM submissions"


def _record(row: sqlite3.Row | None) -> SubmissionRecord | None:
    return SubmissionRecord(**dict(row)) if row is not None else None


def read_submission(conn: sqlite3.Connection, submission_id: str) -> SubmissionRecord | None:
    return _record(conn.execute(f"{_SELECT} WHERE id = ?", (submission_id,)).fetchone())


# An idempotency key is unique per owner (the index on coalesce(owner, ''), idempotency_key).
_BY_KEY = f"{_SELECT} WHERE coalesce(owner, '') = ? AND idempotency_key = ?"


def _by_key(conn: sqlite3.Connection, key: str, owner: str | None) -> SubmissionRecord | None:
    return _record(conn.execute(_BY_KEY, (owner or "", key)).fetchone())


def find_submission(
    conn: sqlite3.Connection, ref: str, by_key: bool = False, owner: str | None = None
) -> SubmissionRecord | None:
    found = read_submission(conn, ref) if is_submission_id(ref) and not by_key else None
    return found or _by_key(conn, ref, owner)


def _store(conn: sqlite3.Connection, record: SubmissionRecord) -> None:
    conn.execute(
        "UPDATE submissions SET state = ?, job_id = ?, upstream_status = ?, error = ?, updated_at = ? "
        "WHERE id = ?",
        (record.state, record.job_id, record.upstream_status, record.error, record.updated_at, record.id),
    )


# The spend of a period (see domain.budget): every submission recorded in it, with its job's status
# and cost; and every job created in it that no submission has (registered, or known by webhook only).
_SPEND = """
    SELECT s.created_at AS at, s.model, s.state AS submission_state, s.estimated_cost AS estimate,
        j.status AS job_status, j.cost AS job_cost, s.owner
    FROM submissions s LEFT JOIN jobs j ON j.id = s.job_id
    WHERE s.created_at >= ? AND s.created_at < ?
    UNION ALL
    SELECT j.created_at, j.model, NULL, NULL, j.status, j.cost, j.owner
    FROM jobs j
    WHERE j.created_at >= ? AND j.created_at < ?
        AND NOT EXISTS (SELECT 1 FROM submissions s WHERE s.job_id = j.id)
"""


def read_spend(conn: sqlite3.Connection, since: float, until: float) -> list[SpendFact]:
    rows = conn.execute(_SPEND, (since, until, since, until)).fetchall()
    return [spend_fact(row) for row in rows]


def begin_submission(
    conn: sqlite3.Connection, new: SubmissionRecord, budget: BudgetCheck | None = None
) -> tuple[SubmissionRecord, bool]:
    """Inside the writer's transaction: no other write (another capped begin) runs between the
    spend read here and the insert, so two submits can never both pass a cap only one fits."""
    if budget is not None:
        taken = _by_key(conn, new.idempotency_key, new.owner)
        if taken is not None:
            return taken, False
        why = refusal(budget, read_spend(conn, budget.since, float("inf")))
        if why is not None:
            raise OverBudget(why)
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO submissions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
        [getattr(new, name) for name in _COLUMNS],
    )
    stored = _by_key(conn, new.idempotency_key, new.owner)
    assert stored is not None  # inserted now, or there already
    return stored, cursor.rowcount == 1


def _settle(
    conn: sqlite3.Connection,
    updated: SubmissionRecord,
    *,
    how: str,
    now: float,
    first_poll_at: float,
    notify_default: str | None,
) -> None:
    """Store a decided submission; one that now has its job registers that job, in this transaction
    (and a job that already ended is told now that it has its notify_url)."""
    _store(conn, updated)
    if updated.state == SUBMITTED and updated.job_id is not None:
        current = read_state(conn, updated.job_id, outputs=False)
        store_change(
            conn, plan_submitted_job(current, updated, how=how, now=now, first_poll_at=first_poll_at)
        )
        write_outbox(conn, updated.job_id, now, notify_default)


def finish_submission(
    conn: sqlite3.Connection,
    submission_id: str,
    outcome: Outcome,
    *,
    now: float,
    first_poll_at: float,
    notify_default: str | None = None,
) -> SubmissionRecord | None:
    current = read_submission(conn, submission_id)
    if current is None:
        return None
    updated = plan_outcome(current, outcome, now)
    if updated is None:
        return current
    _settle(
        conn,
        updated,
        how="submitted through the receiver",
        now=now,
        first_poll_at=first_poll_at,
        notify_default=notify_default,
    )
    return updated


def link_submission(
    conn: sqlite3.Connection, submission_id: str, job_id: str, job_model: str | None, now: float
) -> None:
    """A webhook named this submission: tie it to the webhook's job if it was waiting for one. (The
    applier writes the job's notification after this, with the receiver's default.)"""
    current = read_submission(conn, submission_id)
    updated = plan_link(current, job_id, job_model, now) if current is not None else None
    if updated is not None:
        how = "tied back by the job's webhook"
        _settle(conn, updated, how=how, now=now, first_poll_at=now, notify_default=None)


def forget_submission(conn: sqlite3.Connection, submission_id: str) -> None:
    conn.execute("DELETE FROM submissions WHERE id = ? AND state = 'submitting'", (submission_id,))


def abandon_submissions(conn: sqlite3.Connection, older_than: float | None, now: float) -> int:
    rows = conn.execute(
        f"{_SELECT} WHERE state = 'submitting' AND created_at < ?",
        (older_than if older_than is not None else float("inf"),),
    ).fetchall()
    count = 0
    for row in rows:
        current = _record(row)
        updated = plan_abandoned(current, now) if current is not None else None
        if updated is not None:
            _store(conn, updated)
            count += 1
    return count


class SQLiteSubmissions:
    def __init__(self, file: SQLiteFile, *, notify_default: str | None = None) -> None:
        self._file = file
        self._notify_default = notify_default

    async def begin(
        self, submission: SubmissionRecord, budget: BudgetCheck | None = None
    ) -> tuple[SubmissionRecord, bool]:
        return await self._file.write(begin_submission, submission, budget)

    async def spend(self, since: float, until: float) -> list[SpendFact]:
        return self._file.read_now(read_spend, since, until)

    async def get(
        self, ref: str, *, by_key: bool = False, owner: str | None = None
    ) -> SubmissionRecord | None:
        return self._file.read_now(find_submission, ref, by_key, owner)

    async def finish(
        self, submission_id: str, outcome: Outcome, *, first_poll_at: float
    ) -> SubmissionRecord | None:
        return await self._file.write(
            finish_submission,
            submission_id,
            outcome,
            now=time.time(),
            first_poll_at=first_poll_at,
            notify_default=self._notify_default,
        )

    async def forget(self, submission_id: str) -> None:
        await self._file.write(forget_submission, submission_id)

    async def abandon(self, older_than: float | None) -> int:
        return await self._file.write(abandon_submissions, older_than, time.time())
