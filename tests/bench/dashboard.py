"""Benchmark 9: the dashboard's jobs page on a store of 1,000,000 job records, SQLite and PostgreSQL.

The store is benchmark 5's (`query.build_store`: the real schema and indexes, 8 models, six statuses,
a quarter of the jobs registered with a prompt about a red fox). `openrouter-video serve` runs on it;
one keep-alive httpx client signs in to the dashboard and requests, one after another, the full HTML
of the jobs page (table, filter total, model list) for:

- the first page (`/ui/`),
- a filtered page (`?status=failed&model=…&since=…`, a date range of 30 days),
- a deep page (`?cursor=…` 900,000 jobs down: keyset pagination, no OFFSET),
- a search with many matches (`?q=red fox`, the page fills from the newest jobs),
- a search with no match (`?q=lighthouse`: the worst case, one whole search window examined).

Then the same on PostgreSQL: the SQLite store copied with `openrouter-video store migrate` into a
cluster of the benchmark's own (tests/pg_server.py), then VACUUM ANALYZE (what autovacuum does soon
after a bulk load: statistics, and the visibility map that lets a count walk an index alone; the
copy is not timed), and a receiver serving it (RECEIVER_DATABASE_URL).

Latency is measured at the client: the server's render plus HTTP. A figure, not a timed test.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from urllib.parse import urlencode

import httpx

from openrouter_video.receiver.domain.pages import encode_cursor
from openrouter_video.receiver.storage.sqlite._db import connect

from ._common import API_TOKEN, BlackHole, Context, Row, percentile, receiver_server, scratch
from .query import build_store
from .scaleout import durable_cluster

TARGET_MS = {"first": 50.0, "filtered": 50.0, "deep": 50.0, "search": 50.0, "search-miss": 150.0}


def _sign_in(http: httpx.Client) -> None:
    form = http.get("/ui/signin")
    nonce = re.search(r'name="nonce" value="(\w+)"', form.text)
    if nonce is None:
        raise RuntimeError(f"no sign-in form: {form.status_code} {form.text[:200]}")
    answer = http.post("/ui/signin", data={"nonce": nonce.group(1), "token": API_TOKEN, "next": "/ui/"})
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in answered {answer.status_code}")


def _timed(http: httpx.Client, path: str) -> tuple[float, str]:
    started = time.perf_counter()
    response = http.get(path)
    took = (time.perf_counter() - started) * 1000
    if response.status_code != 200 or 'id="jobs-table"' not in response.text:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:200]}")
    return took, response.text


def _paths(db_path: str, count: int) -> dict[str, str]:
    with contextlib.closing(connect(db_path, readonly=True)) as conn:
        # Setup only (not measured): the key of the job 90 % of the way down, as a page link holds it.
        deep = conn.execute(
            "SELECT created_at, id FROM jobs ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
            (int(count * 0.9),),
        ).fetchone()
        newest = conn.execute("SELECT max(created_at) FROM jobs").fetchone()[0]
    since = time.strftime("%Y-%m-%d", time.gmtime(newest - 30 * 86400))
    return {
        "first": "/ui/",
        "filtered": "/ui/?" + urlencode({"status": "failed", "model": "openai/sora-2-pro", "since": since}),
        "deep": "/ui/?" + urlencode({"cursor": encode_cursor(deep[0], deep[1])}),
        "search": "/ui/?" + urlencode({"q": "red fox"}),
        "search-miss": "/ui/?" + urlencode({"q": "lighthouse"}),
    }


def _measure(
    ctx: Context, url: str, paths: dict[str, str], rounds: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Each page `rounds` times after a warm-up: the latencies (ms) and what the last answer showed."""
    timings: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    with httpx.Client(base_url=url, timeout=60.0, trust_env=False) as http:
        _sign_in(http)
        for name, path in paths.items():
            ctx.command(f"curl -b 'orv_session=...' 'http://127.0.0.1:$PORT{path}'   # x {rounds}")
            for _ in range(5):  # warm-up
                _timed(http, path)
            samples = []
            for _ in range(rounds):
                took, html = _timed(http, path)
                samples.append(took)
            rows = html.count("<tr data-job=")
            shown = 'id="filter-cost">$' in html or '<strong id="filter-cost">' in html
            notes[name] = f"{rows} rows; " + ("filter total shown" if shown else "filter total: over the cap")
            timings[name] = samples
    return timings, notes


def _copy_to_postgres(ctx: Context, db_path: str, url: str) -> None:
    import psycopg

    from openrouter_video.receiver.storage.migrate import migrate_sqlite_to_postgres

    t0 = time.perf_counter()
    migrate_sqlite_to_postgres(f"sqlite://{db_path}", url)  # sqlite:///abs/path
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    ctx.log(f"copied into PostgreSQL and vacuumed in {time.perf_counter() - t0:.0f} s")
    ctx.command(
        "openrouter-video store migrate --from sqlite://$DATA_DIR/receiver.db --to $PG_URL; "
        "psql -c 'VACUUM ANALYZE'"
    )


def bench_dashboard(ctx: Context) -> None:
    count = 100_000 if ctx.quick else 1_000_000
    rounds = 30 if ctx.quick else 100
    results: dict[str, tuple[dict[str, list[float]], dict[str, str]]] = {}
    with scratch(ctx, "dashboard") as work, BlackHole() as hole:
        data_dir = os.path.join(work, "data")
        os.makedirs(data_dir)
        db_path = os.path.join(data_dir, "receiver.db")
        t0 = time.perf_counter()
        build_store(db_path, count)
        ctx.log(f"built {count:,} jobs in {time.perf_counter() - t0:.0f} s")
        ctx.command(
            f"python -c 'from tests.bench.query import build_store; build_store(\"$DATA_DIR/receiver.db\", {count})'"
        )
        paths = _paths(db_path, count)
        with receiver_server(ctx, data_dir, base_url=hole.base_url) as receiver:
            results["SQLite"] = _measure(ctx, receiver.url, paths, rounds)
        with durable_cluster(ctx) as cluster:
            url = cluster.url(cluster.create_database())
            _copy_to_postgres(ctx, db_path, url)
            pg_dir = os.path.join(work, "data-pg")  # content only: the records are in PostgreSQL
            os.makedirs(pg_dir)
            env = {"RECEIVER_DATABASE_URL": url}
            with receiver_server(
                ctx, pg_dir, base_url=hole.base_url, name="receiver-pg", extra_env=env
            ) as receiver:
                results["PostgreSQL"] = _measure(ctx, receiver.url, paths, rounds)
    for backend, (timings, notes) in results.items():
        for name, samples in timings.items():
            ctx.add(
                Row(
                    "9",
                    f"dashboard ({backend}): jobs page, {name} p50",
                    percentile(samples, 50),
                    "ms",
                    TARGET_MS[name],
                    "<=",
                    note=f"{len(samples)} requests on {count:,} jobs, p99 {percentile(samples, 99):.1f} ms, "
                    f"max {max(samples):.1f} ms; {notes[name]}",
                )
            )
