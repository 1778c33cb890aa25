"""Jobs on PostgreSQL: read (one round trip for a record with its outputs and events), list, delete,
count, prune; registering a job and noting an event store what the domain's plan decides."""

from __future__ import annotations

import time
from typing import Any

from ...domain.model import EventRecord, JobFilter, JobRecord, OutputRecord, Page
from ...domain.pages import decode_cursor, encode_cursor, filter_terms
from ...domain.plan import plan_note, plan_registration
from ...domain.retention import Policy, Pruned
from ._db import Conn, Database
from ._locks import lock_jobs
from .changes import change_job, insert_events
from .notifications import write_outbox

JOB_COLUMNS = (
    "id, model, prompt, status, created_at, submitted_at, first_seen_at, updated_at, terminal_at, "
    "source, registered, error, cost, generation_id, owner"
)
# The record, its outputs and its events in one statement: one round trip, one snapshot.
_GET = (
    f"SELECT {JOB_COLUMNS}, "
    "(SELECT coalesce(json_agg(o ORDER BY o.index), '[]') FROM (SELECT idx AS index, state, attempts, bytes, "
    "sha256, error, updated_at, content_key FROM outputs WHERE job_id = j.id) AS o) AS outputs, "
    "(SELECT coalesce(json_agg(e ORDER BY e.id), '[]') FROM (SELECT id, at, source, kind, status, detail "
    "FROM job_events WHERE job_id = j.id) AS e) AS events "
    "FROM jobs AS j WHERE id = %s"
)


def job_record(row: dict[str, Any]) -> JobRecord:
    outputs = tuple(OutputRecord(**o) for o in row.pop("outputs", None) or ())
    events = tuple(
        EventRecord(e["at"], e["source"], e["kind"], e["status"], e["detail"])
        for e in row.pop("events", None) or ()
    )
    return JobRecord(**row, outputs=outputs, events=events)


async def delete_job_rows(conn: Conn, job_ids: list[str]) -> list[str]:
    """Delete jobs with their outputs and events (the caller holds their locks); their content keys."""
    rows = await (
        await conn.execute("DELETE FROM outputs WHERE job_id = ANY(%s) RETURNING content_key", (job_ids,))
    ).fetchall()
    await conn.execute("DELETE FROM job_events WHERE job_id = ANY(%s)", (job_ids,))
    await conn.execute("DELETE FROM notifications WHERE job_id = ANY(%s)", (job_ids,))
    await conn.execute("DELETE FROM jobs WHERE id = ANY(%s)", (job_ids,))
    return [r["content_key"] for r in rows if r["content_key"]]


class JobReads:
    """The Jobs interface but for `register` (which decides, through the plan)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, job_id: str) -> JobRecord | None:
        async def read(conn: Conn) -> dict[str, Any] | None:
            return await (await conn.execute(_GET, (job_id,))).fetchone()

        row = await self._db.run(read, idempotent=True)
        return job_record(row) if row else None

    async def page(self, filters: JobFilter, *, cursor: str | None, limit: int) -> Page:
        where, params = filter_terms(filters, "%s")
        if cursor:
            created_at, after_id = decode_cursor(cursor)
            where.append("(created_at, id) < (%s, %s)")
            params += [created_at, after_id]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY created_at DESC, id DESC LIMIT %s"

        async def read(conn: Conn) -> list[dict[str, Any]]:
            return await (await conn.execute(sql, (*params, limit + 1))).fetchall()

        rows = await self._db.run(read, idempotent=True)
        items = [job_record(row) for row in rows[:limit]]
        last = items[-1] if items else None
        next_cursor = encode_cursor(last.created_at, last.id) if last and len(rows) > limit else None
        return Page(items, next_cursor)

    async def add_event(self, job_id: str, source: str, kind: str, detail: str | None = None) -> None:
        change = plan_note(job_id, source=source, kind=kind, detail=detail, now=time.time())

        async def insert(conn: Conn) -> None:
            await insert_events(conn, job_id, change.events)

        await self._db.run(insert)

    async def delete(self, job_id: str) -> list[str] | None:
        async def delete(conn: Conn) -> list[str] | None:
            await lock_jobs(conn, [job_id])
            found = await (
                await conn.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            ).fetchone()
            if found is None:
                return None
            return await delete_job_rows(conn, [job_id])

        return await self._db.transaction(delete)

    async def counts_by_status(self) -> dict[str, int]:
        async def read(conn: Conn) -> dict[str, int]:
            rows = await (
                await conn.execute("SELECT status, count(*) AS n FROM jobs GROUP BY status")
            ).fetchall()
            return {r["status"]: int(r["n"]) for r in rows}

        return await self._db.run(read, idempotent=True)

    async def prune(self, policy: Policy, now: float, *, dry_run: bool = False) -> Pruned:
        if not dry_run:
            return await self._db.transaction(lambda conn: prune(conn, policy, now))

        async def rehearse(conn: Conn) -> Pruned:
            async with conn.transaction(force_rollback=True):  # the same statements, rolled back
                return await prune(conn, policy, now)

        return await self._db.run(rehearse)


async def prune(conn: Conn, policy: Policy, now: float) -> Pruned:
    """receiver.domain.retention's policy on PostgreSQL, in the caller's transaction; the content keys
    to delete once it committed."""
    pruned = Pruned()
    if (cutoff := policy.video_cutoff(now)) is not None:
        why = policy.video_deleted_reason()
        rows = await (
            await conn.execute(
                "UPDATE outputs AS o SET state = 'deleted', error = %(why)s, updated_at = %(now)s, "
                "content_key = NULL FROM (SELECT job_id, idx, content_key FROM outputs WHERE state = 'done' "
                "AND updated_at < %(cutoff)s FOR UPDATE) AS old WHERE o.job_id = old.job_id AND o.idx = old.idx "
                "RETURNING old.job_id, old.idx, old.content_key",
                {"why": why, "now": now, "cutoff": cutoff},
            )
        ).fetchall()
        rows.sort(key=lambda r: (r["job_id"], r["idx"]))
        if rows:
            await conn.execute(
                "INSERT INTO job_events (job_id, at, source, kind, detail) "
                "SELECT job_id, %s, 'retention', 'video_deleted', detail FROM unnest(%s::text[], %s::text[]) "
                "AS t(job_id, detail)",
                (now, [r["job_id"] for r in rows], [f"output {r['idx']}: {why}" for r in rows]),
            )
        pruned.videos = len(rows)
        pruned.content_keys += [r["content_key"] for r in rows if r["content_key"]]
    if (record_cutoff := policy.record_cutoff(now)) is not None:
        old = (
            "updated_at < %(cutoff)s AND next_poll_at IS NULL AND NOT EXISTS (SELECT 1 FROM outputs o WHERE "
            "o.job_id = jobs.id AND o.state IN ('pending', 'downloading'))"
        )
        cutoff_param = {"cutoff": record_cutoff}
        candidates = [
            r["id"]
            for r in await (await conn.execute(f"SELECT id FROM jobs WHERE {old}", cutoff_param)).fetchall()
        ]
        if candidates:
            await lock_jobs(conn, candidates)
            # Still old once locked (a webhook may have revived one in between).
            still = await (
                await conn.execute(
                    f"SELECT id FROM jobs WHERE id = ANY(%(ids)s) AND {old}",
                    {**cutoff_param, "ids": candidates},
                )
            ).fetchall()
            ids = [r["id"] for r in still]
            pruned.content_keys += await delete_job_rows(conn, ids)
            pruned.jobs = len(ids)
    if (delivery_cutoff := policy.delivery_cutoff(now)) is not None:
        row = await (
            await conn.execute(
                "WITH gone AS (DELETE FROM deliveries WHERE state != 'pending' AND received_at < %s "
                "RETURNING octet_length(body) + length(headers) AS size) "
                "SELECT count(*) AS n, coalesce(sum(size), 0) AS size FROM gone",
                (delivery_cutoff,),
            )
        ).fetchone()
        if row:
            pruned.deliveries, pruned.delivery_bytes = int(row["n"]), int(row["size"])
    return pruned


class Jobs(JobReads):
    """Jobs: the reads, and registering a submitted job (decided by the domain's plan)."""

    def __init__(self, db: Database, *, notify_default: str | None = None) -> None:
        super().__init__(db)
        self._notify_default = notify_default

    async def register(
        self,
        job_id: str,
        *,
        model: str | None,
        prompt: str | None,
        first_poll_at: float,
        owner: str | None = None,
        notify_url: str | None = None,
    ) -> bool:
        now = time.time()

        async def register(conn: Conn) -> bool:
            change = await change_job(
                conn,
                job_id,
                lambda state: plan_registration(
                    state,
                    job_id,
                    model=model,
                    prompt=prompt,
                    now=now,
                    first_poll_at=first_poll_at,
                    owner=owner,
                    notify_url=notify_url,
                ),
            )
            # A job that already ended is told now, if it now has somewhere to be told.
            await write_outbox(conn, job_id, now, self._notify_default)
            return change.created

        return await self._db.transaction(register)
