"""The same sequence of events gives the same records on PostgreSQL as on SQLite.

Both backends store what the domain's plan decides; this runs one scenario through the store
interfaces of each (same clock, same deliveries in the same order) and compares what they read back:
every job record with its outputs and events, and the delivery log. A difference is a backend
deciding something on its own (or storing a decision differently).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any
from unittest import mock

from receiver_support import open_test_stores
from test_postgres_store import stores

from openrouter_video import VideoJob
from openrouter_video.receiver.domain.model import Delivery, JobFilter

T0 = 1_700_000_000.0


def body(job_id: str, status: str, **data: Any) -> bytes:
    return json.dumps(
        {"type": f"video.generation.{status}", "data": {"id": job_id, "status": status, **data}}
    ).encode()


# (idempotency key, body): in arrival order, one second apart.
SCENARIO: list[tuple[str, bytes]] = [
    ("a-pending", body("jobA", "pending", model="google/veo-3.1")),
    ("b-progress", body("jobB", "in_progress")),
    (
        "a-completed",
        body("jobA", "completed", unsigned_urls=["u0", "u1"], usage={"cost": 0.5}, generation_id="g1"),
    ),
    ("a-progress-late", body("jobA", "in_progress")),  # out of order: stale
    ("a-completed", body("jobA", "completed")),  # the same key again: a duplicate
    (
        "a-completed-again",
        body("jobA", "completed", unsigned_urls=["u0", "u1", "u2"]),
    ),  # same: one more output
    ("b-failed", body("jobB", "failed", error="moderation")),
    ("b-completed", body("jobB", "completed")),  # terminal to terminal: a conflict
    ("c-many", body("jobC", "completed", unsigned_urls=[f"u{i}" for i in range(20)])),  # over the cap
    ("garbage", b"\xff not json"),
    ("bad-id", body("job/../x", "pending")),
    ("selftest", body("selftest-123", "completed")),
    (
        "d-odd",
        body("jobD", "queued", error="caf\u00e9 \ud800"),
    ),  # a status upstream may add; a lone surrogate
]


async def run_scenario(s: Any, clock: list[float]) -> dict[str, Any]:
    def tick() -> float:
        clock[0] += 1.0
        return clock[0]

    results = []
    for n, (key, raw) in enumerate(SCENARIO):
        at = tick()
        results.append(await s.deliveries.record(Delivery(key, raw, {"n": str(n)}, at, int(at), "10.0.0.1")))
        if n % 4 == 3:
            await s.deliveries.apply_pending(3)
    tick()
    assert await s.jobs.register("jobA", model="m", prompt="a cat", first_poll_at=clock[0] + 30) is False
    assert await s.jobs.register("jobE", model="m", prompt="a dog", first_poll_at=clock[0] + 30) is True
    while (await s.deliveries.apply_pending(5)).deliveries:
        pass
    tick()
    await s.polls.apply_poll(VideoJob.from_api({"id": "jobE", "status": "completed", "unsigned_urls": ["x"]}))
    tick()
    [claim, *_] = await s.downloads.claim(clock[0], 1)
    assert await s.downloads.finish(claim.job_id, claim.index, content_key="k", size=10, sha256="ab")
    await s.jobs.add_event("jobB", "operator", "note", "looked at it")
    records = {job: await s.jobs.get(job) for job in ("jobA", "jobB", "jobC", "jobD", "jobE", "selftest-123")}
    listing = await s.jobs.page(JobFilter(), cursor=None, limit=3)
    rest = await s.jobs.page(JobFilter(), cursor=listing.cursor, limit=10)
    deliveries = (await s.deliveries.page(state=None, cursor=None, limit=100)).items
    return {
        "recorded": [r.duplicate for r in results],
        "records": records,
        "listing": [j.id for j in listing.items + rest.items],
        "cursor": listing.cursor,
        "deliveries": [dataclasses.replace(d, id=0) for d in deliveries],
        "counts": await s.jobs.counts_by_status(),
        "depth": await s.downloads.depth(),
    }


def test_postgres_stores_what_sqlite_stores_for_the_same_events(tmp_path: Path, pg_url: str) -> None:
    async def on_sqlite() -> dict[str, Any]:
        clock = [T0]
        with mock.patch("time.time", lambda: clock[0]):
            s = await open_test_stores("sqlite", tmp_path, worker="w")
            try:
                return await run_scenario(s, clock)
            finally:
                await s.close()

    async def on_postgres() -> dict[str, Any]:
        clock = [T0]
        with mock.patch("time.time", lambda: clock[0]):
            async with stores(pg_url, listen=False, worker="w") as s:
                return await run_scenario(s, clock)

    sqlite, postgres = asyncio.run(on_sqlite()), asyncio.run(on_postgres())
    assert (
        sqlite["records"]["jobA"] is not None and len(sqlite["records"]["jobC"].outputs) == 16
    )  # the scenario ran
    assert sqlite["records"]["selftest-123"] is None
    for job in sqlite["records"]:
        assert postgres["records"][job] == sqlite["records"][job], job
    assert postgres == sqlite
