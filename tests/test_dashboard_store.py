"""The dashboard's store (storage.base.Dashboard) on each backend, SQLite and PostgreSQL: keyset pages
both ways, a bounded search window that says how far it got, the filter total and its cap, the model
list through the index, a job's timeline with its deliveries, an operator's retry, the change feed
(on PostgreSQL also across commits that land out of id order)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from receiver_support import open_test_stores

from openrouter_video.receiver.domain.model import Delivery, JobFilter, JobSearch, JobSearchPage
from openrouter_video.receiver.storage.base import Stores

BASE = 1_800_000_000.0


@dataclass
class Backend:
    kind: str
    tmp_path: Any
    url: str | None = None

    def run(self, test: Callable[[Stores], Awaitable[Any]]) -> Any:
        """`test(stores)` on fresh stores of this backend, closed afterwards."""

        async def main() -> Any:
            stores = await open_test_stores(self.kind, self.tmp_path, database_url=self.url)
            try:
                return await test(stores)
            finally:
                await stores.close()

        return asyncio.run(main())

    def migrate(self) -> None:
        """Open this backend's stores once: that creates and migrates the schema."""

        async def nothing(stores: Stores) -> None:
            pass

        self.run(nothing)

    def plan(self, query: str) -> str:
        """The query plan of `query`. PostgreSQL scans a table of a few rows whatever its indexes, so
        there the plan is the one it takes when it must use an index (which shows it can)."""
        if self.kind == "sqlite":
            return " ".join(str(r[-1]) for r in self.sql(f"EXPLAIN QUERY PLAN {query}"))
        assert self.url is not None
        with psycopg.connect(self.url) as pg:
            pg.execute("SET enable_seqscan = off")
            return " ".join(r[0] for r in pg.execute(f"EXPLAIN {query}").fetchall())

    def sql(self, statement: str, rows: list[tuple[Any, ...] | None] = [None]) -> list[tuple[Any, ...]]:  # noqa: B006
        """Run `statement` (`?` placeholders) once per row of parameters, committed; the last result."""
        if self.kind == "postgres":
            assert self.url is not None
            with psycopg.connect(self.url) as pg:
                found: list[tuple[Any, ...]] = []
                for params in rows:
                    cursor = pg.execute(statement.replace("?", "%s"), params)
                    found = cursor.fetchall() if cursor.description else []
                return found
        with contextlib.closing(sqlite3.connect(os.path.join(str(self.tmp_path), "receiver.db"))) as conn:
            with conn:
                found = []
                for params in rows:
                    found = conn.execute(statement, params or ()).fetchall()
            return found


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Backend:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    backend = Backend(request.param, tmp_path, url)
    backend.migrate()
    return backend


def _fill(backend: Backend, count: int) -> list[str]:
    """`count` jobs a second apart (job n created at BASE + n), newest last; ids in creation order."""
    rows = []
    for n in range(count):
        status = ("completed", "failed", "pending")[n % 3]
        model = ("google/veo-3.1", "openai/sora-2")[n % 2]
        prompt = f"prompt {n}" + (" with a red fox" if n % 10 == 0 else "")
        cost = 1.0 if status == "completed" else None
        rows.append((f"gen-vid-{n:05d}", model, prompt, status, BASE + n, BASE + n, BASE + n, cost))
    backend.sql(
        "INSERT INTO jobs (id, model, prompt, status, created_at, first_seen_at, updated_at, source, cost) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'webhook', ?)",
        rows,
    )
    return [row[0] for row in rows]


def _ids(page: JobSearchPage) -> list[str]:
    return [j.id for j in page.jobs]


def _search(**fields: Any) -> JobSearch:
    filters = JobFilter(**{k: fields.pop(k) for k in ("status", "model", "since", "until") if k in fields})
    return JobSearch(filters, **fields)


def test_pages_go_older_and_back_newer_without_gaps_or_repeats(backend: Backend) -> None:
    newest_first = _fill(backend, 25)[::-1]

    async def test(s: Stores) -> None:
        first = await s.dashboard.jobs_page(_search(limit=10))
        assert _ids(first) == newest_first[:10] and first.newer is None
        second = await s.dashboard.jobs_page(_search(cursor=first.older, limit=10))
        assert _ids(second) == newest_first[10:20]
        third = await s.dashboard.jobs_page(_search(cursor=second.older, limit=10))
        assert _ids(third) == newest_first[20:] and third.older is None
        back = await s.dashboard.jobs_page(_search(cursor=third.newer, newer=True, limit=10))
        assert _ids(back) == newest_first[10:20]
        # Fewer than a page newer than the cursor: the first page, whole.
        top = await s.dashboard.jobs_page(_search(cursor=back.newer, newer=True, limit=10))
        assert _ids(top) == newest_first[:10] and top.newer is None

    backend.run(test)


def test_filters_narrow_and_combine(backend: Backend) -> None:
    _fill(backend, 30)

    async def test(s: Stores) -> None:
        page = await s.dashboard.jobs_page(_search(status="failed", model="openai/sora-2", limit=100))
        assert page.jobs and all(j.status == "failed" and j.model == "openai/sora-2" for j in page.jobs)
        dated = await s.dashboard.jobs_page(_search(since=BASE + 5, until=BASE + 8, limit=100))
        assert _ids(dated) == ["gen-vid-00007", "gen-vid-00006", "gen-vid-00005"]

    backend.run(test)


def test_search_matches_prompt_text_or_id_prefix_and_escapes_like_wildcards(backend: Backend) -> None:
    _fill(backend, 30)

    async def test(s: Stores) -> None:
        found = await s.dashboard.jobs_page(_search(text="RED FOX", limit=100))
        assert _ids(found) == ["gen-vid-00020", "gen-vid-00010", "gen-vid-00000"]
        by_id = await s.dashboard.jobs_page(_search(text="gen-vid-0001", limit=100))
        assert _ids(by_id) == [f"gen-vid-000{n}" for n in range(19, 9, -1)]
        for wildcard in ("%", "_", "\\"):
            assert (await s.dashboard.jobs_page(_search(text=wildcard, limit=100))).jobs == []

    backend.run(test)


def test_a_search_examines_a_bounded_window_and_continues_from_where_it_stopped(backend: Backend) -> None:
    _fill(backend, 30)

    async def test(s: Stores) -> None:
        page = await s.dashboard.jobs_page(_search(text="red fox", limit=100, window=8))
        # The 8 newest (29..22) hold no match; the page says it searched back to job 22 and goes on from there.
        assert page.jobs == [] and page.searched_to == BASE + 22
        expected = [("gen-vid-00020", BASE + 14), ("gen-vid-00010", BASE + 6), ("gen-vid-00000", None)]
        for job_id, searched_to in expected:
            page = await s.dashboard.jobs_page(
                _search(text="red fox", cursor=page.older, limit=100, window=8)
            )
            assert _ids(page) == [job_id] and page.searched_to == searched_to
        assert page.older is None

    backend.run(test)


def test_a_bad_cursor_is_a_value_error(backend: Backend) -> None:
    async def test(s: Stores) -> None:
        with pytest.raises(ValueError):
            await s.dashboard.jobs_page(_search(cursor="not-a-cursor"))

    backend.run(test)


def test_the_filter_total_is_exact_under_the_cap_and_refused_over_it(backend: Backend) -> None:
    _fill(backend, 30)

    async def test(s: Stores) -> None:
        async def total(filters: JobFilter, text: str | None, cap: int) -> tuple[int, float] | None:
            found = await s.dashboard.filter_total(filters, text, cap=cap)
            return (found.jobs, found.cost) if found is not None else None

        assert await total(JobFilter(status="completed"), None, 100) == (10, 10.0)
        assert await total(JobFilter(), "red fox", 100) == (3, 1.0)  # 0, 10, 20: only 0 is completed
        assert await total(JobFilter(status="pending"), None, 100) == (10, 0.0)
        assert await total(JobFilter(status="failed", model="openai/sora-2"), None, 100) == (5, 0.0)
        assert await total(JobFilter(), None, 29) is None
        assert await total(JobFilter(), None, 30) == (30, 10.0)

    backend.run(test)


def test_models_are_listed_by_skipping_through_the_index(backend: Backend) -> None:
    _fill(backend, 6)
    assert backend.run(lambda s: s.dashboard.models()) == ["google/veo-3.1", "openai/sora-2"]
    assert "jobs_model_created" in backend.plan("SELECT min(model) FROM jobs WHERE model > 'a'")


def _delivery(job_id: str, status: str, key: str) -> Delivery:
    body = json.dumps({"type": f"video.generation.{status}", "data": {"id": job_id, "status": status}})
    return Delivery(key, body.encode(), {}, time.time(), int(time.time()))


def test_the_timeline_has_each_delivery_before_what_it_did(backend: Backend) -> None:
    job_id = "gen-vid-timeline"

    async def test(s: Stores) -> None:
        await s.jobs.register(job_id, model="m", prompt="p", first_poll_at=time.time() + 60)
        await s.deliveries.record(_delivery(job_id, "completed", "k1"))
        await s.deliveries.record(_delivery(job_id, "completed", "k2"))  # same event, second key: no change
        await s.deliveries.apply_pending(10)
        kinds = [(e.kind, e.status) for e in await s.dashboard.timeline(job_id)]
        assert kinds == [
            ("registered", "pending"),
            ("delivery", "completed"),
            ("status", "completed"),
            ("delivery", "completed"),
        ]
        polling = await s.dashboard.polling(job_id)
        assert polling is not None and (polling.poll_attempts, polling.next_poll_at) == (0, None)

    backend.run(test)


def test_retry_output_resets_a_failed_output_and_says_so(backend: Backend) -> None:
    job_id = "gen-vid-retry"
    backend.run(lambda s: s.jobs.register(job_id, model="m", prompt="p", first_poll_at=BASE))
    backend.sql(
        "INSERT INTO outputs (job_id, idx, state, attempts, next_attempt_at, error, updated_at) "
        "VALUES (?, ?, ?, ?, 0, ?, 0)",
        [(job_id, 0, "failed", 12, "HTTP 500"), (job_id, 1, "done", 1, None)],
    )

    async def test(s: Stores) -> None:
        assert [(o.index, o.model) for o in await s.dashboard.outputs_needing_attention(100)] == [(0, "m")]
        assert await s.dashboard.retry_output(job_id, 0, who="dashboard") == "failed"
        assert await s.dashboard.retry_output(job_id, 1, who="dashboard") is None  # done: untouched
        assert await s.dashboard.retry_output(job_id, 7, who="dashboard") is None
        assert await s.dashboard.outputs_needing_attention(100) == []
        record = await s.jobs.get(job_id)
        assert record is not None
        event = record.events[-1]
        assert event.kind == "download_retry" and "was failed: HTTP 500" in (event.detail or "")
        claims = await s.downloads.claim(time.time(), 10)  # due now: the fetcher takes it at once
        assert [(c.job_id, c.index, c.attempts) for c in claims] == [(job_id, 0, 0)]

    backend.run(test)


def test_the_change_feed_names_the_jobs_that_changed_and_new_deliveries(backend: Backend) -> None:
    async def test(s: Stores) -> None:
        start = (await s.dashboard.changes_since(None)).token
        quiet = await s.dashboard.changes_since(start)
        assert (quiet.jobs, quiet.all, quiet.deliveries) == ((), False, False)
        await s.jobs.register("gen-vid-a", model="m", prompt="p", first_poll_at=BASE)
        await s.jobs.register("gen-vid-b", model="m", prompt="p", first_poll_at=BASE)
        registered = await s.dashboard.changes_since(quiet.token)
        assert registered.jobs == ("gen-vid-a", "gen-vid-b") and not registered.deliveries
        await s.deliveries.record(_delivery("gen-vid-a", "failed", "k"))
        stored = await s.dashboard.changes_since(registered.token)
        assert stored.deliveries and stored.jobs == ()
        await s.deliveries.apply_pending(10)
        applied = await s.dashboard.changes_since(stored.token)
        assert applied.jobs == ("gen-vid-a",)
        assert await s.dashboard.last_delivery_at() is not None

    backend.run(test)


def test_on_postgresql_a_change_committed_after_a_newer_one_is_still_reported(
    tmp_path: Any, pg_url: str
) -> None:
    """Ids are handed out at insert and committed in any order: event `late` gets its id first, `early`
    commits first and is seen; `late` must be reported when it commits, not lost below the newest id."""
    backend = Backend("postgres", tmp_path, pg_url)
    insert = "INSERT INTO job_events (job_id, at, source, kind) VALUES (%s, 0, 'test', 'note')"

    async def test(s: Stores) -> None:
        token = (await s.dashboard.changes_since(None)).token
        async with await psycopg.AsyncConnection.connect(pg_url) as slow:
            async with slow.transaction():
                await slow.execute(insert, ("gen-vid-late",))  # its id is taken now
                async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as quick:
                    await quick.execute(insert, ("gen-vid-early",))
                seen = await s.dashboard.changes_since(token)
                assert seen.jobs == ("gen-vid-early",)
            later = await s.dashboard.changes_since(seen.token)  # the late one has committed now
            assert later.jobs == ("gen-vid-late",)
            assert (await s.dashboard.changes_since(later.token)).jobs == ()

    backend.run(test)


def test_on_postgresql_the_outputs_needing_attention_come_from_their_own_index(
    tmp_path: Any, pg_url: str
) -> None:
    backend = Backend("postgres", tmp_path, pg_url)
    backend.migrate()
    plan = backend.plan(
        "SELECT * FROM outputs WHERE (state IN ('failed', 'gone') OR (state = 'pending' AND error IS NOT NULL)) "
        "ORDER BY updated_at DESC LIMIT 5"
    )
    assert "outputs_attention" in plan
