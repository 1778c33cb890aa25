"""Benchmark 7: the dashboard's jobs page on a store of 1,000,000 job records.

The store is benchmark 5's (`query.build_store`: the real schema and indexes, 8 models, six statuses,
a quarter of the jobs registered with a prompt about a red fox). `openrouter-video serve` runs on it;
one keep-alive httpx client signs in to the dashboard and requests, one after another, the full HTML
of the jobs page (table, filter total, model list) for:

- the first page (`/ui/`),
- a filtered page (`?status=failed&model=…&since=…`, a date range of 30 days),
- a deep page (`?cursor=…` 900,000 jobs down: keyset pagination, no OFFSET),
- a search with many matches (`?q=red fox`, the page fills from the newest jobs),
- a search with no match (`?q=lighthouse`: the worst case, one whole search window examined).

Latency is measured at the client: the server's render plus HTTP. A figure, not a timed test.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from urllib.parse import urlencode

import httpx

from openrouter_video.receiver import records
from openrouter_video.receiver._db import connect

from ._common import API_TOKEN, BlackHole, Context, Row, percentile, receiver_server, scratch
from .query import build_store

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


def bench_dashboard(ctx: Context) -> None:
    count = 100_000 if ctx.quick else 1_000_000
    rounds = 30 if ctx.quick else 100
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
        with contextlib.closing(connect(db_path, readonly=True)) as conn:
            # Setup only (not measured): the key of the job 90 % of the way down, as a page link holds it.
            deep = conn.execute(
                "SELECT created_at, id FROM jobs ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
                (int(count * 0.9),),
            ).fetchone()
            newest = conn.execute("SELECT max(created_at) FROM jobs").fetchone()[0]
        since = time.strftime("%Y-%m-%d", time.gmtime(newest - 30 * 86400))
        paths = {
            "first": "/ui/",
            "filtered": "/ui/?"
            + urlencode({"status": "failed", "model": "openai/sora-2-pro", "since": since}),
            "deep": "/ui/?" + urlencode({"cursor": records.encode_cursor(deep[0], deep[1])}),
            "search": "/ui/?" + urlencode({"q": "red fox"}),
            "search-miss": "/ui/?" + urlencode({"q": "lighthouse"}),
        }
        timings: dict[str, list[float]] = {}
        notes: dict[str, str] = {}
        with (
            receiver_server(ctx, data_dir, base_url=hole.base_url) as receiver,
            httpx.Client(base_url=receiver.url, timeout=60.0, trust_env=False) as http,
        ):
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
                total = (
                    "filter total shown"
                    if 'id="filter-cost">$' in html or '<strong id="filter-cost">' in html
                    else "filter total: over the cap"
                )
                notes[name] = f"{rows} rows; {total}"
                timings[name] = samples
    for name, samples in timings.items():
        ctx.add(
            Row(
                "7",
                f"dashboard: jobs page, {name} p50",
                percentile(samples, 50),
                "ms",
                TARGET_MS[name],
                "<=",
                note=f"{len(samples)} requests on {count:,} jobs, p99 {percentile(samples, 99):.1f} ms, "
                f"max {max(samples):.1f} ms; {notes[name]}",
            )
        )
