"""The PostgreSQL job store against a real throwaway server (tests/pg_server.py): what several
replicas on one database rely on (deduplication, claims under leases, migrations at once, wakeups
across instances) and what the intake relies on (a 503 while the server is down, recovery after).

Each test gets a fresh empty database; stores are opened as the ordinary role `receiver`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from pg_server import Cluster, running_cluster

from openrouter_video.receiver.domain.model import Delivery
from openrouter_video.receiver.storage.base import StoreUnavailable
from openrouter_video.receiver.storage.postgres import PostgresStores, open_postgres
from openrouter_video.receiver.storage.postgres.schema import MIGRATIONS


@asynccontextmanager
async def stores(url: str, **options: Any) -> AsyncIterator[PostgresStores]:
    opened = await open_postgres(url, **options)
    try:
        yield opened
    finally:
        await opened.close()


async def until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def delivery(
    key: str, body: dict[str, Any] | bytes | None = None, *, replay: bytes | None = None
) -> Delivery:
    raw = (
        body if isinstance(body, bytes) else json.dumps(body or {"type": "video.generation.updated"}).encode()
    )
    return Delivery(
        idempotency_key=key,
        body=raw,
        headers={"webhook-id": key},
        received_at=time.time(),
        signed_at=int(time.time()),
        remote_addr="127.0.0.1",
        replay_key=replay,
    )


def sql(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def seed_outputs(url: str, jobs: int, per_job: int = 2) -> list[tuple[str, int]]:
    """Completed jobs with pending outputs, written directly (the queue tests need no webhooks)."""
    now = time.time()
    outputs = []
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(jobs):
            job_id = f"job-{n:04d}"
            upstream = json.dumps({"id": job_id, "status": "completed", "unsigned_urls": ["u"] * per_job})
            conn.execute(
                "INSERT INTO jobs (id, status, created_at, first_seen_at, updated_at, source, upstream) "
                "VALUES (%s, 'completed', %s, %s, %s, 'webhook', %s)",
                (job_id, now, now, now, upstream),
            )
            for index in range(per_job):
                conn.execute(
                    "INSERT INTO outputs (job_id, idx, state, next_attempt_at, updated_at) VALUES (%s, %s, 'pending', %s, %s)",
                    (job_id, index, now - 1, now),
                )
                outputs.append((job_id, index))
    return outputs


# -- schema ------------------------------------------------------------------------------------


def test_migrations_run_once_when_replicas_start_at_once_and_need_no_superuser(pg_url: str) -> None:
    async def main() -> None:
        opened = await asyncio.gather(*(open_postgres(pg_url, listen=False) for _ in range(4)))
        for store in opened:
            await store.close()
        again = await open_postgres(pg_url, listen=False)  # a restart finds nothing to do
        await again.close()

    asyncio.run(main())
    assert sql(pg_url, "SELECT version FROM schema_migrations ORDER BY version") == [
        (n,) for n in range(1, len(MIGRATIONS) + 1)
    ]
    assert sql(pg_url, "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user") == [
        (False, False)
    ]
    tables = {r[0] for r in sql(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"deliveries", "jobs", "job_events", "outputs", "schema_migrations"} <= tables


# -- the delivery log --------------------------------------------------------------------------


def test_a_duplicate_storm_across_replicas_keeps_exactly_one_row(pg_url: str) -> None:
    async def main() -> list[Any]:
        async with stores(pg_url, listen=False) as a, stores(pg_url, listen=False) as b:
            same = [delivery("storm-key") for _ in range(40)]
            return await asyncio.gather(
                *((a if n % 2 else b).deliveries.record(d) for n, d in enumerate(same))
            )

    results = asyncio.run(main())
    kept = [r for r in results if not r.duplicate]
    assert len(kept) == 1 and kept[0].delivery_id is not None
    assert all(r.delivery_id is None for r in results if r.duplicate)
    assert sql(pg_url, "SELECT id, state FROM deliveries") == [(kept[0].delivery_id, "pending")]


def test_a_replayed_signed_request_under_a_fresh_key_is_a_duplicate(pg_url: str) -> None:
    async def main() -> tuple[Any, ...]:
        async with stores(pg_url, listen=False) as s:
            first = await s.deliveries.record(delivery("key-1", replay=b"r" * 16))
            replayed = await s.deliveries.record(delivery("key-2", replay=b"r" * 16))
            other = await s.deliveries.record(delivery("key-3", replay=b"s" * 16))
            unsigned = [
                await s.deliveries.record(delivery(f"key-n{n}")) for n in range(2)
            ]  # NULLs never clash
            return first, replayed, other, unsigned

    first, replayed, other, unsigned = asyncio.run(main())
    assert not first.duplicate and replayed.duplicate and not other.duplicate
    assert not any(r.duplicate for r in unsigned)
    assert sql(pg_url, "SELECT count(*) FROM deliveries") == [(4,)]


def test_deliveries_arriving_together_share_inserts_and_keep_their_own_answers(pg_url: str) -> None:
    """300 deliveries at once (grouped into a few INSERTs): every new key and every fresh replay key
    gets its own row and id; a key or a replay key seen earlier in the same batch or before is a
    duplicate; text PostgreSQL cannot hold is replaced, not refused."""
    keys = [f"k{n % 150}" for n in range(300)]  # each key twice, inside one burst

    async def main() -> list[Any]:
        async with stores(pg_url, listen=False) as s:
            await s.deliveries.record(delivery("seen-before", replay=b"old" * 6))
            burst = [delivery(k, {"type": "x", "text": "nul\u0000"}) for k in keys]
            burst += [delivery("seen-before"), delivery("fresh-key", replay=b"old" * 6)]
            burst += [delivery(f"rep{n}", replay=b"same-replay-key!") for n in range(3)]
            return await asyncio.gather(*(s.deliveries.record(d) for d in burst))

    results = asyncio.run(main())
    by_key: dict[str, list[Any]] = {}
    for key, result in zip([*keys, "seen-before", "fresh-key", "rep0", "rep1", "rep2"], results, strict=True):
        by_key.setdefault(key, []).append(result)
    for key in set(keys):
        assert sorted(r.duplicate for r in by_key[key]) == [False, True], key
    assert by_key["seen-before"][0].duplicate and by_key["fresh-key"][0].duplicate
    assert sorted(by_key[f"rep{n}"][0].duplicate for n in range(3)) == [False, True, True]
    new_ids = [r.delivery_id for r in results if not r.duplicate]
    assert len(new_ids) == len(set(new_ids)) == 151
    stored = dict(sql(pg_url, "SELECT idempotency_key, id FROM deliveries"))
    assert len(stored) == 152 and set(new_ids) <= set(stored.values())
    [(transactions,)] = sql(pg_url, "SELECT count(DISTINCT xmin::text) FROM deliveries")
    assert transactions <= 10  # grouped: a handful of INSERTs, not one per delivery


def test_a_selftest_delivery_is_kept_as_test_and_never_pending(pg_url: str) -> None:
    async def main() -> tuple[Any, int]:
        async with stores(pg_url, listen=False) as s:
            d = delivery("selftest-key")
            test = Delivery(**{**{f: getattr(d, f) for f in d.__slots__}, "selftest_job": "selftest-abc"})
            recorded = await s.deliveries.record(test)
            return recorded, await s.deliveries.pending_count()

    recorded, pending = asyncio.run(main())
    assert not recorded.duplicate and pending == 0
    assert sql(pg_url, "SELECT job_id, event_type, state FROM deliveries") == [
        ("selftest-abc", "selftest", "test")
    ]


def test_text_postgresql_cannot_hold_is_stored_replaced_not_refused(pg_url: str) -> None:
    async def main() -> Any:
        async with stores(pg_url, listen=False) as s:
            return await s.deliveries.record(delivery("nul\x00key-\ud800"))

    assert not asyncio.run(main()).duplicate
    assert sql(pg_url, "SELECT idempotency_key FROM deliveries") == [("nul\ufffdkey-?",)]


def test_deliveries_page_newest_first_with_keyset_cursors(pg_url: str) -> None:
    async def main() -> tuple[list[int], list[int], str | None]:
        async with stores(pg_url, listen=False) as s:
            for n in range(5):
                await s.deliveries.record(delivery(f"k{n}"))
            first = await s.deliveries.page(state=None, cursor=None, limit=3)
            second = await s.deliveries.page(state="pending", cursor=first.cursor, limit=3)
            for bad in ("abc", "99999999999999999999", "9999999999999999999"):
                with pytest.raises(ValueError):
                    await s.deliveries.page(state=None, cursor=bad, limit=3)
            with pytest.raises(ValueError):
                await s.deliveries.page(state="nonsense", cursor=None, limit=3)
            return [d.id for d in first.items], [d.id for d in second.items], second.cursor

    first, second, end = asyncio.run(main())
    assert first == sorted(first, reverse=True) and len(first) == 3
    assert second == sorted(second, reverse=True) and len(second) == 2 and max(second) < min(first)
    assert end is None


# -- claims under leases -----------------------------------------------------------------------


def test_two_replicas_claiming_downloads_at_once_never_get_the_same_output(pg_url: str) -> None:
    async def main() -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
        async with (
            stores(pg_url, listen=False, worker="a") as a,
            stores(pg_url, listen=False, worker="b") as b,
        ):
            outputs = seed_outputs(pg_url, jobs=30, per_job=2)

            async def drain(s: PostgresStores) -> list[tuple[str, int]]:
                got: list[tuple[str, int]] = []
                while claimed := await s.downloads.claim(time.time(), 3):
                    got += [(c.job_id, c.index) for c in claimed]
                    assert all(c.attempts == 0 and c.upstream["status"] == "completed" for c in claimed)
                return got

            got_a, got_b = await asyncio.gather(drain(a), drain(b))
            return outputs, got_a, got_b

    outputs, got_a, got_b = asyncio.run(main())
    assert not set(got_a) & set(got_b)
    assert sorted(got_a + got_b) == sorted(outputs)
    assert got_a and got_b  # both really competed
    assert sorted(sql(pg_url, "SELECT DISTINCT claimed_by FROM outputs")) == [("a",), ("b",)]


def test_an_expired_download_lease_is_claimable_and_only_the_claimant_records(pg_url: str) -> None:
    async def main() -> None:
        async with (
            stores(pg_url, listen=False, worker="a", lease=30) as a,
            stores(pg_url, listen=False, worker="b", lease=30) as b,
        ):
            seed_outputs(pg_url, jobs=1, per_job=1)
            now = time.time()
            [claim] = await a.downloads.claim(now, 5)
            assert await b.downloads.claim(now + 1, 5) == []  # held: a's lease runs
            assert await a.downloads.renew([(claim.job_id, 0)]) == 1
            later = now + 31 + 30  # past a's renewed lease
            [taken] = await b.downloads.claim(later, 5)
            assert (taken.job_id, taken.index, taken.attempts) == (claim.job_id, 0, 1)
            # a's worker stalled and came back: it holds nothing any more.
            assert await a.downloads.renew([(claim.job_id, 0)]) == 0
            assert not await a.downloads.finish(claim.job_id, 0, content_key="x", size=1, sha256="00")
            assert not await a.downloads.retry(claim.job_id, 0, next_at=now, error="late")
            assert not await a.downloads.end(claim.job_id, 0, state="failed", error="late")
            assert await b.downloads.finish(
                claim.job_id, 0, content_key=f"{claim.job_id}/0.mp4", size=5, sha256="ab"
            )
            assert await a.downloads.content_key(claim.job_id, 0) == f"{claim.job_id}/0.mp4"
            assert await a.downloads.depth() == 0 and await a.downloads.next_due() is None
            record = await a.jobs.get(claim.job_id)
            assert record is not None
            assert [(o.state, o.bytes, o.content_key) for o in record.outputs] == [
                ("done", 5, f"{claim.job_id}/0.mp4")
            ]
            assert [(e.source, e.kind) for e in record.events] == [("fetcher", "downloaded")]

    asyncio.run(main())


def test_a_retried_download_gives_its_attempt_back_when_told_and_falls_due_later(pg_url: str) -> None:
    async def main() -> None:
        async with stores(pg_url, listen=False, worker="a") as a:
            seed_outputs(pg_url, jobs=1, per_job=1)
            now = time.time()
            [claim] = await a.downloads.claim(now, 5)
            assert await a.downloads.next_due() == pytest.approx(now + a.downloads.lease)
            assert await a.downloads.retry(
                claim.job_id, 0, next_at=now + 100, error="disk full", count_attempt=False
            )
            assert await a.downloads.next_due() == pytest.approx(now + 100)
            assert await a.downloads.claim(now + 50, 5) == []
            [again] = await a.downloads.claim(now + 101, 5)
            assert again.attempts == 0  # the wait was the receiver's, not the output's
            assert await a.downloads.end(claim.job_id, 0, state="gone", error="410 upstream")
            record = await a.jobs.get(claim.job_id)
            assert record is not None and record.outputs[0].state == "gone"
            assert record.events[-1].kind == "download_gone"
            assert await a.downloads.recover() == 0

    asyncio.run(main())


def test_two_replicas_never_poll_the_same_job_at_once(pg_url: str) -> None:
    async def main() -> None:
        async with (
            stores(pg_url, listen=False, worker="a", poll_lease=30) as a,
            stores(pg_url, listen=False, worker="b", poll_lease=30) as b,
        ):
            now = time.time()
            with psycopg.connect(pg_url, autocommit=True) as conn:
                for n in range(20):
                    conn.execute(
                        "INSERT INTO jobs (id, status, created_at, first_seen_at, updated_at, source, registered, "
                        "next_poll_at) VALUES (%s, 'pending', %s, %s, %s, 'submit', true, %s)",
                        (f"job-{n:02d}", now, now, now, now - 1),
                    )
            got_a, got_b = await asyncio.gather(a.polls.claim(now, 12), b.polls.claim(now, 12))
            ids_a, ids_b = {c.job_id for c in got_a}, {c.job_id for c in got_b}
            assert not ids_a & ids_b and len(ids_a | ids_b) == 20
            assert await a.polls.claim(now, 50) == [] and await b.polls.claim(now, 50) == []
            mine = sorted(ids_a)[0]
            await b.polls.schedule(mine, now + 5)  # not b's claim while a's lease runs: dropped
            await a.polls.schedule(mine, now + 5)
            assert [c.job_id for c in await b.polls.claim(now + 6, 50)] == [mine]
            # a dead claimant: its lease runs out and the job is due again
            assert len(await b.polls.claim(now + 31, 50)) == 19

    asyncio.run(main())
    assert sql(
        pg_url, "SELECT poll_attempts FROM jobs WHERE id = (SELECT min(id) FROM jobs WHERE poll_attempts > 0)"
    ) == [(1,)]


# -- wakeups -----------------------------------------------------------------------------------


def test_a_delivery_recorded_on_one_replica_wakes_the_other(pg_cluster: Cluster, pg_url: str) -> None:
    async def main() -> None:
        async with stores(pg_url, worker="a") as a, stores(pg_url, worker="b") as b:
            await asyncio.wait_for(b.wakeups.listening.wait(), 10)
            await b.wakeups.wait("deliveries", 0)  # the wake-up every (re)connection starts with
            assert not await b.wakeups.wait("deliveries", 0)
            await a.deliveries.record(delivery("wake-1"))
            assert await b.wakeups.wait("deliveries", 10)
            # the listener's connection dies: it comes back by itself and wakes again
            received = b.wakeups.received
            pg_cluster.admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%' "
                f"AND datname = '{pg_url.rsplit('/', 1)[1]}'"
            )
            await until(lambda: _false_then(b), what="the listener to notice")
            await asyncio.wait_for(b.wakeups.listening.wait(), 10)
            await b.wakeups.wait("deliveries", 0)
            await a.deliveries.record(delivery("wake-2"))
            assert await b.wakeups.wait("deliveries", 10)
            assert b.wakeups.received > received

    asyncio.run(main())


async def _false_then(s: PostgresStores) -> bool:
    return not s.wakeups.listening.is_set()


# -- the server going away ---------------------------------------------------------------------


def test_store_unavailable_while_the_server_is_down_then_it_recovers() -> None:
    # Its own cluster, durable (synchronous commit): it is stopped the hard way (-m immediate) and
    # what was acknowledged before must be there after.
    with running_cluster(fsync=True) as cluster:
        name = cluster.create_database()
        url = cluster.url(name)

        async def main() -> None:
            async with stores(url, timeout=1.0, worker="a") as s:
                assert not (await s.deliveries.record(delivery("before"))).duplicate
                await s.health.check_writable()
                cluster.stop()
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await s.deliveries.record(delivery("during"))
                with pytest.raises(StoreUnavailable):
                    await s.health.check_writable()
                with pytest.raises(StoreUnavailable):
                    await s.jobs.get("job-1")
                assert time.monotonic() - started < 10  # a 503 soon, not a hang
                cluster.start()

                async def recorded() -> bool:
                    try:
                        return not (await s.deliveries.record(delivery("after"))).duplicate
                    except StoreUnavailable:
                        return False

                await until(recorded, timeout=30, what="the store to recover")
                await s.health.check_writable()
                assert await s.deliveries.pending_count() == 2  # "during" was never kept

        asyncio.run(main())
