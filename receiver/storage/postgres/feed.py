"""The dashboard's change feed on PostgreSQL: which job events and deliveries are new since a token.

An identity column hands ids out when a row is inserted, and transactions commit in any order: event
41 may become visible after event 42 was seen. A token that kept only the newest id seen would miss
41 for good, and a replica's live pages would not show that change. So the token also keeps the ids
below the newest that were missing when looked (`unseen`), and each look reads from the lowest of
them: an id that shows up later is reported then. An id is looked for `UNSEEN_FOR` seconds, then
taken for a rollback (they leave gaps too; the readiness probe's delivery is one); only ids within
`SPAN` of the newest are tracked. Each look reads at most a `SPAN` of seen ids again, by primary key.
"""

from __future__ import annotations

import time
from typing import Any

from ...domain.model import CHANGES_LIMIT, CHANGES_READ, Changes, ChangeToken
from ._db import Conn

# Longer than a transaction of the receiver lasts (statements wait at most lock_timeout for a lock,
# an idle transaction is ended at 60 s): an id not committed by then was rolled back.
UNSEEN_FOR = 90.0
SPAN = 1000  # ids below the newest looked for at most (in-flight transactions are far fewer)
_READ = CHANGES_READ  # rows one look reads at most per table; the rest on the next look

Unseen = tuple[tuple[int, float], ...]


def advance(seen: int, unseen: Unseen, found: list[int], now: float) -> tuple[int, Unseen, set[int]]:
    """After reading the ids `found` (ascending) from just above the lowest unseen id (or `seen`):
    (the newest id now seen, the ids still missing below it, the ids that are new).

    An unseen id that is there now is new however long ago it was missed (a stream resumed from an
    old token must still get it); only a missing one is given up after UNSEEN_FOR."""
    waiting = {i: since for i, since in unseen if now - since < UNSEEN_FOR}
    present = set(found)
    missed = {i for i, _since in unseen}
    new = {i for i in found if i > seen or i in missed}
    top = max(found[-1] if found else seen, seen)
    missing = {i: since for i, since in waiting.items() if i not in present}
    for i in range(max(seen + 1, top - SPAN), top):
        if i not in present:
            missing.setdefault(i, now)
    return top, tuple(sorted((i, s) for i, s in missing.items() if i > top - SPAN)), new


async def _look(
    conn: Conn, table: str, column: str, seen: int, unseen: Unseen, now: float
) -> tuple[Any, ...]:
    floor = min([i for i, _since in unseen] + [seen + 1]) - 1
    rows = await (
        await conn.execute(
            f"SELECT id, {column} AS value FROM {table} WHERE id > %s ORDER BY id LIMIT %s", (floor, _READ)
        )
    ).fetchall()
    top, missing, new = advance(seen, unseen, [r["id"] for r in rows], now)
    return top, missing, [r["value"] for r in rows if r["id"] in new]


async def _newest(conn: Conn) -> ChangeToken:
    row = await (
        await conn.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM job_events) AS events, "
            "(SELECT coalesce(max(id), 0) FROM deliveries) AS deliveries"
        )
    ).fetchone()
    assert row is not None
    return ChangeToken(int(row["events"]), int(row["deliveries"]))


async def changes_since(conn: Conn, token: ChangeToken | None, limit: int | None = CHANGES_LIMIT) -> Changes:
    """See storage.base.Dashboard.changes_since."""
    if token is None:
        return Changes(await _newest(conn))
    now = time.time()
    events, unseen_events, job_ids = await _look(
        conn, "job_events", "job_id", token.events, token.unseen_events, now
    )
    deliveries, unseen_deliveries, stored = await _look(
        conn, "deliveries", "id", token.deliveries, token.unseen_deliveries, now
    )
    jobs = list(dict.fromkeys(job_ids))  # distinct, in the order they changed
    listed = jobs if limit is None else jobs[:limit]
    return Changes(
        ChangeToken(events, deliveries, unseen_events, unseen_deliveries),
        jobs=tuple(listed),
        all=len(listed) < len(jobs),
        deliveries=bool(stored),
    )
