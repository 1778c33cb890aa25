"""DeliveryLog on PostgreSQL: record (the webhook's only wait), list; applying is in `applying.py`."""

from __future__ import annotations

import json
from typing import Any

from ...domain.model import Delivery, DeliveryRecord, Page, RecordedDelivery
from ...domain.pages import UNPROCESSED, check_delivery_state, decode_delivery_cursor, encode_delivery_cursor
from ._db import Conn, Database
from .group_insert import GroupInsert, Row
from .wakeups import Wakeups

# A delivery is one row of a group INSERT (group_insert.py), committed before the answer. No conflict
# target: ON CONFLICT DO NOTHING then covers every unique constraint, the idempotency key and the
# replay key alike (a target names one, and the other would raise). Other replicas' appliers are
# told after the commit (wakeups.py says why not inside it).
# A `webhook test` delivery: kept for the record as 'test', never applied, no job, nobody to wake.
_RECORD_SELFTEST = (
    "INSERT INTO deliveries (idempotency_key, job_id, event_type, received_at, signed_at, remote_addr, "
    "headers, body, replay_key, state, applied_at) VALUES (%s, %s, 'selftest', %s, %s, %s, %s, %s, %s, "
    "'test', %s) ON CONFLICT DO NOTHING RETURNING id"
)
SHOWN = (
    "id, idempotency_key, job_id, event_type, status, received_at, remote_addr, state, error, applied_at, "
    "octet_length(body) AS body_bytes"
)  # never the body or the headers (the signature is one)
_MAX_ID = 2**63 - 1


class DeliveryPages:
    """The recording and reading half of the DeliveryLog."""

    def __init__(self, db: Database, wakeups: Wakeups) -> None:
        self._db = db
        self._wakeups = wakeups
        self._group = GroupInsert(db)

    async def record(self, delivery: Delivery) -> RecordedDelivery:
        headers = json.dumps(delivery.headers)
        if delivery.selftest_job is not None:
            return await self._record_selftest(delivery, headers)
        new_id = await self._group.insert(
            Row(
                delivery.idempotency_key,
                delivery.received_at,
                delivery.signed_at,
                delivery.remote_addr,
                headers,
                delivery.body,
                delivery.replay_key,
                delivery.submission_id,
            )
        )
        if new_id is None:
            return RecordedDelivery(duplicate=True, delivery_id=None)
        self._wakeups.notify("deliveries")  # this process's applier, at once
        self._wakeups.announce("deliveries")  # the other replicas
        return RecordedDelivery(duplicate=False, delivery_id=new_id)

    async def _record_selftest(self, delivery: Delivery, headers: str) -> RecordedDelivery:
        params = (
            delivery.idempotency_key,
            delivery.selftest_job,
            delivery.received_at,
            delivery.signed_at,
            delivery.remote_addr,
            headers,
            delivery.body,
            delivery.replay_key,
            delivery.received_at,
        )

        async def insert(conn: Conn) -> RecordedDelivery:
            row = await (await conn.execute(_RECORD_SELFTEST, params)).fetchone()
            if row is None:
                return RecordedDelivery(duplicate=True, delivery_id=None)
            return RecordedDelivery(duplicate=False, delivery_id=int(row["id"]))

        # Idempotent: replayed after a dropped connection, a committed first try answers "duplicate".
        return await self._db.run(insert, idempotent=True)

    async def page(self, *, state: str | None, cursor: str | None, limit: int) -> Page:
        check_delivery_state(state)
        before = decode_delivery_cursor(cursor) if cursor else None
        if before is not None and before > _MAX_ID:
            raise ValueError("bad cursor")
        where = "AND id < %(before)s" if before is not None else ""
        if state == UNPROCESSED:  # each state through its own partial index
            sql = (
                f"SELECT * FROM (SELECT {SHOWN} FROM deliveries WHERE state = 'failed' {where} "
                f"UNION ALL SELECT {SHOWN} FROM deliveries WHERE state = 'pending' {where}) AS d "
                "ORDER BY id DESC LIMIT %(limit)s"
            )
        elif state is not None:
            sql = f"SELECT {SHOWN} FROM deliveries WHERE state = %(state)s {where} ORDER BY id DESC LIMIT %(limit)s"
        else:
            sql = f"SELECT {SHOWN} FROM deliveries WHERE true {where} ORDER BY id DESC LIMIT %(limit)s"
        params = {"before": before, "state": state, "limit": limit + 1}

        async def read(conn: Conn) -> list[dict[str, Any]]:
            return await (await conn.execute(sql, params)).fetchall()

        rows = await self._db.run(read, idempotent=True)
        items = [DeliveryRecord(**row) for row in rows[:limit]]
        return Page(items, encode_delivery_cursor(items[-1].id) if len(rows) > limit else None)

    async def pending_count(self) -> int:
        async def count(conn: Conn) -> int:
            row = await (
                await conn.execute("SELECT count(*) AS n FROM deliveries WHERE state = 'pending'")
            ).fetchone()
            return int(row["n"]) if row else 0

        return await self._db.run(count, idempotent=True)
