"""Benchmark 5: the query API on a store of 1,000,000 job records.

The store is built directly in a fresh receiver database with the real schema
(`receiver._db.connect` + `migrate`, i.e. the real tables and indexes), in bulk: jobs created
over the last 180 days in time order, 8 models with a skewed mix, statuses 70 % completed, 15 %
failed, 3 % cancelled, 2 % expired, 5 % in_progress, 5 % pending; a quarter registered through
`POST /jobs`; for each job its status events (and "registered"), for completed ones their output
rows (5 % with two outputs, state done, with size, sha256 and content key) plus a "downloaded" event,
and the upstream JSON the receiver keeps. No ANALYZE is run (the receiver does not run it either).
Deliveries are not generated: the two queries measured do not read them.

Then `openrouter-video serve` runs on that data dir and one keep-alive httpx client sends, one
after another, `GET /jobs/{id}` for random existing ids and `GET /jobs?status=completed&limit=100`,
after a short warm-up. Latency is measured at the client (it includes HTTP and JSON).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import string
import time

import httpx

from openrouter_video.receiver.storage.sqlite._db import connect, migrate

from ._common import AUTH, BlackHole, Context, Row, percentile, receiver_server, scratch

MODELS = [
    ("google/veo-3.1", 30),
    ("openai/sora-2-pro", 20),
    ("kwaivgi/kling-v3.0-pro", 15),
    ("google/veo-3.1-fast", 12),
    ("bytedance/seedance-1-pro", 10),
    ("minimax/hailuo-02", 6),
    ("alibaba/wan-2.5", 4),
    ("luma/ray-3", 3),
]
STATUSES = [
    ("completed", 70),
    ("failed", 15),
    ("cancelled", 3),
    ("expired", 2),
    ("in_progress", 5),
    ("pending", 5),
]
ERRORS = {
    "failed": "Content policy violation",
    "cancelled": "Job was cancelled",
    "expired": "Job exceeded maximum time to live",
}
_ALNUM = string.ascii_letters + string.digits
BATCH = 20_000


def build_store(db_path: str, count: int, *, seed: int = 7, sample: int = 5000) -> list[str]:
    """Fill a fresh receiver database with `count` jobs; return a random sample of their ids."""
    rng = random.Random(seed)
    conn = connect(db_path)
    migrate(conn)
    # Bulk-load settings for this build only; the receiver reopens with its own (WAL, synchronous=FULL).
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    model_names, model_weights = zip(*MODELS, strict=True)
    status_names, status_weights = zip(*STATUSES, strict=True)
    now = time.time()
    start = now - 180 * 86400
    step = (now - start) / count
    ids: list[str] = []
    sample_every = max(1, count // sample)
    conn.execute("BEGIN")
    jobs: list[tuple] = []
    events: list[tuple] = []
    outputs: list[tuple] = []
    for n in range(count):
        created = start + n * step + rng.random() * step
        job_id = f"gen-vid-{int(created)}-{''.join(rng.choices(_ALNUM, k=20))}"
        if n % sample_every == 0:
            ids.append(job_id)
        model = rng.choices(model_names, model_weights)[0]
        status = rng.choices(status_names, status_weights)[0]
        registered = rng.random() < 0.25
        runtime = 30 + rng.random() * 240
        terminal = status not in ("pending", "in_progress")
        updated = created + (runtime if terminal else runtime / 3)
        error = ERRORS.get(status)
        cost = round(0.2 + rng.random() * 3, 2) if status == "completed" else None
        generation_id = f"gen-{int(created)}-{job_id[-20:]}" if status != "pending" else None
        upstream = {"id": job_id, "status": status, "model": model, "generation_id": generation_id}
        n_outputs = 2 if status == "completed" and rng.random() < 0.05 else 1
        if status == "completed":
            upstream["unsigned_urls"] = [
                f"https://openrouter.ai/api/v1/videos/{job_id}/content?index={i}" for i in range(n_outputs)
            ]
            upstream["usage"] = {"cost": cost, "is_byok": False}
        if error:
            upstream["error"] = error
        source = "webhook" if terminal else "submit"
        jobs.append(
            (
                job_id,
                model,
                "a short prompt about a red fox in fresh snow" if registered else None,
                status,
                created,
                created if registered else None,
                created,
                updated,
                updated if terminal else None,
                source,
                int(registered),
                error,
                cost,
                generation_id,
                json.dumps(upstream),
            )
        )
        if registered:
            events.append((job_id, created, "submit", "registered", "pending", None))
        if status != "pending" or not registered:
            events.append((job_id, updated, source, "status", status, error))
        if status == "completed":
            for index in range(n_outputs):
                size = rng.randrange(2_000_000, 40_000_000)
                sha = f"{rng.getrandbits(256):064x}"
                done_at = updated + 2 + rng.random() * 20
                outputs.append(
                    (
                        job_id,
                        index,
                        "done",
                        1,
                        updated,
                        size,
                        sha,
                        f"{job_id}/{index}.mp4",
                        None,
                        done_at,
                    )
                )
                events.append(
                    (
                        job_id,
                        done_at,
                        "fetcher",
                        "downloaded",
                        None,
                        f"output {index}: {size} bytes, sha256 {sha}",
                    )
                )
        if len(jobs) >= BATCH:
            _flush(conn, jobs, events, outputs)
    _flush(conn, jobs, events, outputs)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return ids


def _flush(conn, jobs: list[tuple], events: list[tuple], outputs: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO jobs (id, model, prompt, status, created_at, submitted_at, first_seen_at, updated_at, "
        "terminal_at, source, registered, error, cost, generation_id, upstream) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        jobs,
    )
    conn.executemany(
        "INSERT INTO job_events (job_id, at, source, kind, status, detail) VALUES (?, ?, ?, ?, ?, ?)", events
    )
    conn.executemany(
        "INSERT INTO outputs (job_id, idx, state, attempts, next_attempt_at, bytes, sha256, content_key, error, "
        "updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        outputs,
    )
    jobs.clear()
    events.clear()
    outputs.clear()


def _timed(http: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = http.get(path)
    took = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:200]}")
    return took * 1000


def bench_query(ctx: Context) -> None:
    count = 100_000 if ctx.quick else 1_000_000
    gets, lists = (500, 200) if ctx.quick else (2000, 500)
    with scratch(ctx, "query") as work, BlackHole() as hole:
        data_dir = os.path.join(work, "data")
        os.makedirs(data_dir)
        db_path = os.path.join(data_dir, "receiver.db")
        t0 = time.perf_counter()
        ids = build_store(db_path, count)
        built = time.perf_counter() - t0
        with contextlib.closing(connect(db_path, readonly=True)) as conn:
            rows = {
                t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("jobs", "outputs", "job_events")
            }
        size_mb = os.path.getsize(db_path) / 1e6
        ctx.log(f"built {rows} in {built:.0f} s, {size_mb:,.0f} MB")
        ctx.command(
            f'python -c \'from tests.bench.query import build_store; build_store("$DATA_DIR/receiver.db", '
            f"{count})'"
        )
        rng = random.Random(11)
        with (
            receiver_server(ctx, data_dir, base_url=hole.base_url) as receiver,
            httpx.Client(base_url=receiver.url, headers=AUTH, timeout=30.0, trust_env=False) as http,
        ):
            ctx.command(
                f"curl -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/jobs/$ID   # x {gets}, "
                f"sequential, keep-alive"
            )
            ctx.command(
                f"curl -H 'Authorization: Bearer $TOKEN' "
                f"'http://127.0.0.1:$PORT/jobs?status=completed&limit=100'   # x {lists}"
            )
            for job_id in ids[:50]:
                _timed(http, f"/jobs/{job_id}")
            for _ in range(20):
                _timed(http, "/jobs?status=completed&limit=100")
            get_ms = [_timed(http, f"/jobs/{rng.choice(ids)}") for _ in range(gets)]
            page = http.get("/jobs?status=completed&limit=100").json()
            if len(page["jobs"]) != 100:
                raise RuntimeError(f"list returned {len(page['jobs'])} jobs")
            list_ms = [_timed(http, "/jobs?status=completed&limit=100") for _ in range(lists)]
    ctx.add(
        Row(
            "5",
            "query: GET /jobs/{id} p99",
            percentile(get_ms, 99),
            "ms",
            5,
            "<=",
            note=f"{gets} requests, p50 {percentile(get_ms, 50):.2f} ms, max {max(get_ms):.1f} ms; "
            f"{count:,} jobs built in {built:.0f} s ({size_mb:,.0f} MB)",
        )
    )
    ctx.add(
        Row(
            "5",
            "query: GET /jobs?status=completed&limit=100 p99",
            percentile(list_ms, 99),
            "ms",
            20,
            "<=",
            note=f"{lists} requests, p50 {percentile(list_ms, 50):.2f} ms, max {max(list_ms):.1f} ms",
        )
    )
