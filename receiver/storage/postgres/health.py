"""Health on PostgreSQL: readiness writes a delivery row and rolls it back (the path a webhook takes)."""

from __future__ import annotations

import time

from ._db import Conn, Database


class Health:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def check_writable(self) -> None:
        async def probe(conn: Conn) -> None:
            async with conn.transaction(force_rollback=True):
                await conn.execute(
                    "INSERT INTO deliveries (idempotency_key, received_at, headers, body) VALUES (%s, %s, '{}', '')",
                    (f"readiness-probe-{time.time()}", time.time()),
                )

        await self._db.run(probe)

    def writes_waiting(self) -> int:
        """Callers waiting for a pooled connection: how hard the store is pushed right now."""
        return self._db.waiting()
