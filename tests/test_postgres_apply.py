"""Applying deliveries on the PostgreSQL store, through the domain's plan: several appliers at once,
a query on one replica seeing a delivery acknowledged by another, isolation of a delivery that
raises, registration and polls."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psycopg
import pytest
from test_postgres_store import stores, until

from openrouter_video import VideoJob
from openrouter_video.receiver.domain.model import Delivery
from openrouter_video.receiver.domain.states import rank
from openrouter_video.receiver.storage.postgres import applying


def event(job_id: str, status: str, **data: Any) -> bytes:
    return json.dumps(
        {"type": f"video.generation.{status}", "data": {"id": job_id, "status": status, **data}}
    ).encode()


def delivery(key: str, body: bytes, received_at: float | None = None) -> Delivery:
    now = time.time() if received_at is None else received_at
    return Delivery(key, body, {"webhook-id": key}, now, int(now), "127.0.0.1")


def test_a_job_read_on_one_replica_shows_a_delivery_another_acknowledged(pg_url: str) -> None:
    async def main() -> None:
        async with (
            stores(pg_url, listen=False, worker="a") as a,
            stores(pg_url, listen=False, worker="b") as b,
        ):
            await a.deliveries.record(delivery("k1", event("jobX1", "in_progress")))
            await a.deliveries.record(delivery("k2", event("jobOther", "pending", prompt="about jobX1")))
            assert await b.jobs.get("jobX1") is None  # stored, not applied yet
            applied = await b.deliveries.apply_pending_for_job("jobX1")
            assert [d.job_id for d in applied] == ["jobX1"]  # not the other job's event naming it
            record = await b.jobs.get("jobX1")
            assert record is not None and record.status == "in_progress" and record.source == "webhook"
            assert await a.deliveries.pending_count() == 1
            assert await a.deliveries.apply_pending_for_job("jobX1") == []

    asyncio.run(main())


def test_a_query_waits_for_a_delivery_another_replica_is_applying(pg_url: str) -> None:
    """The other replica's applier holds the row (its transaction is open): the query waits for it and
    then reads the job as applied, never "no such job"."""

    async def main() -> None:
        async with stores(pg_url, listen=False, worker="b") as b:
            await b.deliveries.record(delivery("k1", event("jobHeld", "in_progress")))
            async with await psycopg.AsyncConnection.connect(pg_url) as other:
                row = await (
                    await other.execute("SELECT id FROM deliveries WHERE state = 'pending' FOR UPDATE")
                ).fetchone()
                assert row is not None
                query = asyncio.create_task(b.deliveries.apply_pending_for_job("jobHeld"))

                async def blocked() -> bool:
                    async with await psycopg.AsyncConnection.connect(pg_url) as watch:
                        row = await (
                            await watch.execute(
                                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND datname = current_database()"
                            )
                        ).fetchone()
                    return bool(row and row[0] == 1)

                await until(blocked, what="the query to wait for the applier's row lock")
                assert not query.done()
                # the other replica applies it and commits
                await other.execute("UPDATE deliveries SET state = 'applied' WHERE id = %s", (row[0],))
                await other.execute(
                    "INSERT INTO jobs (id, status, created_at, first_seen_at, updated_at, source) "
                    "VALUES ('jobHeld', 'in_progress', 1, 1, 1, 'webhook')"
                )
                await other.commit()
            assert await asyncio.wait_for(query, 10) == []  # nothing left for it to apply
            record = await b.jobs.get("jobHeld")
            assert record is not None and record.status == "in_progress"

    asyncio.run(main())


def test_two_appliers_apply_every_delivery_once_and_never_move_a_job_back(pg_url: str) -> None:
    async def one_round(r: int) -> tuple[bool, list[Any]]:
        jobs = [f"jobC{r}x{n:02d}" for n in range(12)]
        async with (
            stores(pg_url, listen=False, worker="a") as a,
            stores(pg_url, listen=False, worker="b") as b,
        ):
            t = time.time()
            for n, job_id in enumerate(jobs):
                for step, status in enumerate(("pending", "in_progress", "completed")):
                    body = (
                        event(job_id, status, unsigned_urls=["u0", "u1"])
                        if status == "completed"
                        else event(job_id, status)
                    )
                    await a.deliveries.record(delivery(f"{job_id}-{status}", body, t + n * 0.001 + step))

            async def drain(s: Any) -> list[Any]:
                got = []
                while batch := (await s.deliveries.apply_pending(5)).deliveries:
                    got += batch
                return got

            got_a, got_b = await asyncio.gather(drain(a), drain(b))
            ids = [d.delivery_id for d in got_a + got_b]
            assert len(ids) == len(set(ids)) == 36
            return bool(got_a and got_b), [await a.jobs.get(job_id) for job_id in jobs]

    # Both must really have raced at least once: on a loaded machine one applier can drain a round
    # before the other's first claim, which proves nothing about two at once; up to 5 rounds.
    raced = False
    for r in range(5):
        both, records = asyncio.run(one_round(r))
        for record in records:
            assert record.status == "completed"
            # Two appliers may take one job's deliveries in other batches and apply a later one first
            # (SKIP LOCKED claims by id, the job lock is per batch); the forward-only plan makes that
            # harmless: the status never moves back, and it ends where the last event says.
            statuses = [e.status for e in record.events if e.kind == "status"]
            assert statuses and statuses[-1] == "completed"
            assert [rank(s) for s in statuses] == sorted(rank(s) for s in statuses)
            assert [(o.index, o.state) for o in record.outputs] == [(0, "pending"), (1, "pending")]
        if both:
            raced = True
            break
    assert raced, "in 5 rounds one applier always drained everything before the other claimed any"


def test_a_delivery_that_raises_is_marked_failed_when_isolated(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = applying.plan_job_update

    def plan(state: Any, job: VideoJob, **kw: Any) -> Any:
        if job.id == "jobBoom":
            raise RuntimeError("boom")
        return real(state, job, **kw)

    monkeypatch.setattr(applying, "plan_job_update", plan)

    async def main() -> None:
        async with stores(pg_url, listen=False) as s:
            await s.deliveries.record(delivery("k1", event("jobFine", "pending")))
            await s.deliveries.record(delivery("k2", event("jobBoom", "pending")))
            await s.deliveries.record(delivery("k3", b"not json"))
            with pytest.raises(RuntimeError):
                await s.deliveries.apply_pending(10)  # not isolated: nothing of the batch is kept
            assert await s.deliveries.pending_count() == 3 and await s.jobs.get("jobFine") is None
            batch = await s.deliveries.apply_pending(10, isolate=True)
            outcome = {d.idempotency_key: d.error for d in batch.deliveries}
            assert outcome["k1"] is None
            assert outcome["k2"] == "internal error while applying: RuntimeError: boom"
            assert outcome["k3"] is not None and "JSON" in outcome["k3"]
            assert await s.jobs.get("jobBoom") is None and await s.jobs.get("jobFine") is not None
            page = await s.deliveries.page(state="unprocessed", cursor=None, limit=10)
            assert sorted(d.idempotency_key for d in page.items) == ["k2", "k3"]
            monkeypatch.setattr(applying, "plan_job_update", real)  # the bug fixed
            again = await s.deliveries.reprocess(None)
            assert [(d.idempotency_key, d.applied) for d in again] == [("k2", True), ("k3", False)]
            assert (await s.jobs.get("jobBoom")) is not None

    asyncio.run(main())


def test_registration_and_polls_go_through_the_plan(pg_url: str) -> None:
    async def main() -> None:
        async with stores(pg_url, listen=False, worker="a") as s:
            now = time.time()
            assert await s.jobs.register("jobR", model="m", prompt="p", first_poll_at=now - 1)
            assert not await s.jobs.register("jobR", model="m", prompt="p", first_poll_at=now - 1)
            [claim] = await s.polls.claim(now, 5)
            raw = {"id": "jobR", "status": "completed", "unsigned_urls": ["u"]}
            result = await s.polls.apply_poll(VideoJob.from_api(raw))
            assert (result.decision, result.previous, result.outputs_queued) == ("advance", "pending", 1)
            await s.polls.schedule(claim.job_id, now + 10)  # terminal: never polled again
            assert await s.polls.claim(now + 100, 5) == []
            record = await s.jobs.get("jobR")
            assert record is not None and record.registered and record.status == "completed"
            assert [(e.source, e.kind) for e in record.events] == [
                ("submit", "registered"),
                ("poll", "status"),
            ]
            assert await s.jobs.counts_by_status() == {"completed": 1}
            assert await s.jobs.delete("jobR") == []
            assert await s.jobs.delete("jobR") is None

    asyncio.run(main())


def test_prune_applies_the_retention_policy_and_returns_the_content_keys(pg_url: str) -> None:
    from openrouter_video.receiver.domain.retention import Policy

    day = 86400.0
    now = time.time()
    old, recent = now - 40 * day, now - 1 * day

    def seed() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for job_id, updated in (("jobOld", old), ("jobNew", recent), ("jobBusy", old)):
                conn.execute(
                    "INSERT INTO jobs (id, status, created_at, first_seen_at, updated_at, source) "
                    "VALUES (%s, 'completed', %s, %s, %s, 'webhook')",
                    (job_id, updated, updated, updated),
                )
            conn.execute(
                "INSERT INTO outputs (job_id, idx, state, next_attempt_at, updated_at, content_key, bytes) VALUES "
                "('jobNew', 0, 'done', 0, %s, 'jobNew/0.mp4', 5), ('jobNew', 1, 'done', 0, %s, 'jobNew/1.mp4', 5), "
                "('jobOld', 0, 'done', 0, %s, 'jobOld/0.mp4', 5), ('jobBusy', 0, 'pending', 0, %s, NULL, NULL)",
                (old, recent, old, old),
            )
            for n, received in enumerate((old, recent)):
                for state in ("applied", "pending"):
                    conn.execute(
                        "INSERT INTO deliveries (idempotency_key, received_at, headers, body, state) VALUES (%s, %s, '{}', 'xyz', %s)",
                        (f"{state}-{n}", received, state),
                    )

    async def main() -> Any:
        async with stores(pg_url, listen=False) as s:
            seed()
            policy = Policy(video_days=30, record_days=30, delivery_days=30)
            rehearsed = await s.jobs.prune(policy, now, dry_run=True)
            assert await s.jobs.get("jobOld") is not None  # nothing kept of the dry run
            pruned = await s.jobs.prune(policy, now)
            assert rehearsed == pruned
            return pruned, await s.jobs.get("jobNew"), await s.jobs.get("jobOld"), await s.jobs.get("jobBusy")

    pruned, new, gone, busy = asyncio.run(main())
    assert (pruned.videos, pruned.jobs, pruned.deliveries, pruned.delivery_bytes) == (2, 1, 1, 5)
    assert sorted(pruned.content_keys) == ["jobNew/0.mp4", "jobOld/0.mp4"]
    assert gone is None and busy is not None  # a job with a pending output stays
    assert [(o.index, o.state, o.content_key) for o in new.outputs] == [
        (0, "deleted", None),
        (1, "done", "jobNew/1.mp4"),
    ]
    assert new.outputs[0].error.startswith("deleted by retention")
    assert [e.kind for e in new.events] == ["video_deleted"]


def test_outputs_queued_on_one_replica_wake_the_fetchers_of_the_others(pg_url: str) -> None:
    async def main() -> None:
        async with stores(pg_url, worker="a") as a, stores(pg_url, worker="b") as b:
            await asyncio.wait_for(b.wakeups.listening.wait(), 10)
            await b.wakeups.wait("downloads", 0)  # the wake-up every (re)connection starts with
            await a.deliveries.record(delivery("k1", event("jobW", "in_progress")))
            await a.deliveries.apply_pending(10)
            assert not await b.wakeups.wait("downloads", 0)  # nothing queued: nobody woken for it
            await a.deliveries.record(delivery("k2", event("jobW", "completed", unsigned_urls=["u"])))
            await a.deliveries.apply_pending(10)
            assert await a.wakeups.wait("downloads", 0)  # this replica's fetcher, at once
            assert await b.wakeups.wait("downloads", 10)  # the other's, by NOTIFY at commit
            [claim] = await b.downloads.claim(time.time(), 5)
            assert (claim.job_id, claim.index) == ("jobW", 0)

    asyncio.run(main())


def test_a_lock_held_too_long_answers_store_unavailable_not_a_hang(pg_url: str) -> None:
    from openrouter_video.receiver.storage.base import StoreUnavailable

    async def main() -> None:
        async with stores(pg_url, listen=False, lock_timeout=0.3) as b:
            await b.deliveries.record(delivery("k1", event("jobStuck", "in_progress")))
            async with await psycopg.AsyncConnection.connect(
                pg_url
            ) as frozen:  # a replica stalled mid-transaction
                await frozen.execute("SELECT id FROM deliveries FOR UPDATE")
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="lock timeout"):
                    await b.deliveries.apply_pending_for_job("jobStuck")
                assert time.monotonic() - started < 5
                assert (await b.deliveries.apply_pending(10)).deliveries == []  # skipped, not waited for
            assert [d.job_id for d in await b.deliveries.apply_pending_for_job("jobStuck")] == ["jobStuck"]

    asyncio.run(main())
