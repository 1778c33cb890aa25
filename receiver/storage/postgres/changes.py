"""Reading a job's state and storing a decided `JobChange`, on PostgreSQL. Nothing here decides.

Every change runs the same way, inside the caller's transaction: take the job's lock (`_locks`), read
its state (`SELECT ... FOR NO KEY UPDATE`), ask the domain's plan, store the answer with generic SQL.
A create that finds the row there after all (inserted by something that does not take the job locks,
such as `store migrate`) reads the state again and asks the plan again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from psycopg import sql

from ...domain.plan import JOB_STATE_COLUMNS, JobChange, JobState, NewEvent
from ._db import Conn
from ._locks import lock_jobs

# The columns a change may write: the plan names them, this guards the SQL built from the names.
JOB_COLUMNS = frozenset(
    {
        "id", "model", "prompt", "status", "created_at", "submitted_at", "first_seen_at", "updated_at",
        "terminal_at", "source", "registered", "error", "cost", "generation_id", "next_poll_at",
        "poll_attempts", "upstream", "owner", "notify_url",
    }
)  # fmt: skip

_STATE = sql.SQL(
    "SELECT {columns}, ARRAY(SELECT idx FROM outputs WHERE outputs.job_id = jobs.id) AS output_indexes "
    "FROM jobs WHERE id = %s FOR NO KEY UPDATE"
).format(columns=sql.SQL(", ").join(sql.Identifier(c) for c in JOB_STATE_COLUMNS))


async def read_state(conn: Conn, job_id: str) -> JobState | None:
    """The job's state for the plan, its row locked until the transaction ends (None: no such job)."""
    row = await (await conn.execute(_STATE, (job_id,))).fetchone()
    if row is None:
        return None
    values = {name: row[name] for name in JOB_STATE_COLUMNS}
    if values.get("upstream") is not None:
        values["upstream"] = json.loads(values["upstream"])
    return JobState(**values, outputs=frozenset(row["output_indexes"]))


def _stored(name: str, value: Any) -> Any:
    if name not in JOB_COLUMNS:
        raise ValueError(f"a job change names an unknown column: {name!r}")
    return json.dumps(value) if name == "upstream" and value is not None else value


async def change_job(
    conn: Conn, job_id: str, plan: Callable[[JobState | None], JobChange], *, locked: bool = False
) -> JobChange:
    """Lock the job (unless the caller holds its lock), read it, plan, store the change; the change."""
    if not locked:
        await lock_jobs(conn, [job_id])
    for _ in range(2):
        change = plan(await read_state(conn, job_id))
        if await store_change(conn, change):
            return change
    raise RuntimeError(f"job {job_id!r} kept appearing under a create")


async def store_change(conn: Conn, change: JobChange) -> bool:
    """Store a decided change; False (nothing stored) when its create found the job already there."""
    if change.create is not None:
        names = list(change.create)
        inserted = await conn.execute(
            sql.SQL("INSERT INTO jobs ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING").format(
                sql.SQL(", ").join(sql.Identifier(n) for n in names),
                sql.SQL(", ").join(sql.Placeholder() for _ in names),
            ),
            [_stored(n, change.create[n]) for n in names],
        )
        if inserted.rowcount == 0:
            return False
    if change.update:
        names = list(change.update)
        await conn.execute(
            sql.SQL("UPDATE jobs SET {} WHERE id = %s").format(
                sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names)
            ),
            [*(_stored(n, change.update[n]) for n in names), change.job_id],
        )
    await insert_events(conn, change.job_id, change.events)
    if change.queue_outputs:
        queued = await conn.execute(
            "INSERT INTO outputs (job_id, idx, state, next_attempt_at, updated_at) "
            "SELECT %s, idx, 'pending', %s, %s FROM unnest(%s::int[]) AS idx ON CONFLICT DO NOTHING",
            (change.job_id, change.outputs_at, change.outputs_at, list(change.queue_outputs)),
        )
        if queued.rowcount:
            # In this transaction: delivered at commit, when the outputs are there to claim.
            await conn.execute("SELECT pg_notify('downloads', '')")
    return True


async def insert_events(conn: Conn, job_id: str, events: tuple[NewEvent, ...]) -> None:
    if not events:
        return
    await conn.execute(
        "INSERT INTO job_events (job_id, at, source, kind, status, detail, delivery_id) "
        "SELECT %s, at, source, kind, status, detail, delivery_id FROM unnest(%s::float8[], %s::text[], "
        "%s::text[], %s::text[], %s::text[], %s::int8[]) WITH ORDINALITY "
        "AS e(at, source, kind, status, detail, delivery_id, n) ORDER BY n",
        (
            job_id,
            [e.at for e in events],
            [e.source for e in events],
            [e.kind for e in events],
            [e.status for e in events],
            [e.detail for e in events],
            [e.delivery_id for e in events],
        ),
    )
