"""Benchmark 10: how soon open long-polls wake after a webhook, with 500 of them open at once.

`openrouter-video serve` runs as a subprocess on loopback. 500 jobs are made known to it (a signed
`in_progress` webhook each), then 500 long-polls (`GET /jobs/{id}?wait=60`, one per job) are opened
and held until the receiver's /metrics counts them all waiting. Then a signed terminal webhook per
job: one after another ("staggered": each latency is its own), or all at once from 32 connections
("burst": the figure includes the queue). A job's latency runs from its webhook's 2xx arriving back
to its long-poll's answer arriving, both on this process's clock.

Also measured: the receiver's CPU while the 500 long-polls wait and nothing changes (waiting costs
no polling per waiter: one watcher per process looks at the change feed once a second), and, on
PostgreSQL, the same staggered run with the waits on one replica and the webhooks sent to another
(woken by LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign

from ._common import (
    AUTH,
    WEBHOOK_SECRET,
    BlackHole,
    Context,
    Row,
    percentile,
    process_cpu_seconds,
    receiver_server,
    scratch,
)

WAITERS = 500
WAIT_SECONDS = 60
BURST_CONNECTIONS = 32
IDLE_SECONDS = 3.0
TARGET_P99_MS = 250.0  # one process: the applier's commit, one feed read, the waiter's one read
TARGET_P99_REPLICAS_MS = 1000.0  # another replica: a NOTIFY (the watcher's fallback look is 1 s)


def _webhook(job_id: str, status: str) -> tuple[bytes, dict[str, str]]:
    body = (
        f'{{"type":"video.generation.{status}","created_at":"2026-12-01T00:00:00.000Z",'
        f'"data":{{"id":"{job_id}","status":"{status}","error":"bench"}}}}'
    ).encode()
    return body, {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(WEBHOOK_SECRET, body),
        IDEMPOTENCY_HEADER: f"{job_id}-{status}",
    }


async def _post_all(url: str, ids: list[str], status: str, connections: int) -> dict[str, float]:
    """Send the webhooks (`connections` at a time); when each one's 2xx came back."""
    acked: dict[str, float] = {}
    queue = list(reversed(ids))
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:

        async def worker() -> None:
            while queue:
                job_id = queue.pop()
                body, headers = _webhook(job_id, status)
                answer = await http.post(f"{url}/webhooks/openrouter", content=body, headers=headers)
                if answer.status_code != 200:
                    raise RuntimeError(f"webhook for {job_id}: {answer.status_code} {answer.text[:200]}")
                acked[job_id] = time.perf_counter()

        await asyncio.gather(*(worker() for _ in range(connections)))
    return acked


async def _open_waits(wait_url: str) -> float:
    async with httpx.AsyncClient(timeout=10, trust_env=False, headers=AUTH) as http:
        text = (await http.get(f"{wait_url}/metrics")).text
    return next(
        float(line.split()[1]) for line in text.splitlines() if line.startswith("receiver_waits_open ")
    )


async def _round(
    wait_url: str, hook_url: str, label: str, connections: int, pid: int | None
) -> dict[str, Any]:
    ids = [f"jobBenchWait{label}{n:04d}" for n in range(WAITERS)]
    await _post_all(hook_url, ids, "in_progress", BURST_CONNECTIONS)
    answered: dict[str, float] = {}
    limits = httpx.Limits(max_connections=WAITERS + 10, max_keepalive_connections=WAITERS + 10)
    async with httpx.AsyncClient(
        timeout=WAIT_SECONDS + 30, limits=limits, headers=AUTH, trust_env=False
    ) as http:

        async def long_poll(job_id: str) -> str:
            answer = await http.get(f"{wait_url}/jobs/{job_id}", params={"wait": WAIT_SECONDS})
            answered[job_id] = time.perf_counter()
            return answer.headers.get("wait-result", f"HTTP {answer.status_code}")

        polls = [asyncio.create_task(long_poll(job_id)) for job_id in ids]
        deadline = time.monotonic() + 60
        while await _open_waits(wait_url) < WAITERS:
            if time.monotonic() > deadline or any(p.done() for p in polls):
                raise RuntimeError(f"{label}: the {WAITERS} long-polls were not all waiting")
            await asyncio.sleep(0.1)
        idle_cpu = None
        if pid is not None:  # the receiver's CPU while every waiter waits and nothing changes
            before = process_cpu_seconds(pid)
            await asyncio.sleep(IDLE_SECONDS)
            idle_cpu = (process_cpu_seconds(pid) - before) / IDLE_SECONDS
        acked = await _post_all(hook_url, ids, "failed", connections)
        results = await asyncio.wait_for(asyncio.gather(*polls), timeout=120)
    woken = sum(r == "changed" for r in results)
    if woken != WAITERS:
        raise RuntimeError(
            f"{label}: {WAITERS - woken} long-polls did not wake on their change: {set(results)}"
        )
    return {"latency_ms": [(answered[j] - acked[j]) * 1000 for j in ids], "idle_cpu": idle_cpu}


def _report(ctx: Context, label: str, how: str, latencies: list[float], target: float | None) -> None:
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    ctx.log(f"{label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms ({how})")
    ctx.add(Row("10", f"long-poll wake, {label}: p50", p50, "ms", note=how))
    ctx.add(Row("10", f"long-poll wake, {label}: p99", p99, "ms", target, "<="))


def bench_waiting(ctx: Context) -> None:
    ctx.command(
        f"{WAITERS} x GET /jobs/$ID?wait={WAIT_SECONDS} (httpx.AsyncClient), held until /metrics "
        f"receiver_waits_open = {WAITERS}; then a signed terminal webhook per job (sequential, then "
        f"{BURST_CONNECTIONS} connections); latency = long-poll answer - webhook 2xx"
    )
    with scratch(ctx, "waiting") as work, BlackHole() as hole:
        with receiver_server(ctx, os.path.join(work, "data"), base_url=hole.base_url) as rx:
            staggered = asyncio.run(_round(rx.url, rx.url, "Staggered", 1, rx.pid))
            burst = asyncio.run(_round(rx.url, rx.url, "Burst", BURST_CONNECTIONS, None))
        _report(
            ctx, "SQLite, staggered", "webhooks one after another", staggered["latency_ms"], TARGET_P99_MS
        )
        # No target: in a burst the applier yields to the intake on purpose (acknowledging comes
        # first), so a wake waits for the burst to be acknowledged; a negative figure is an answer
        # that arrived before this process got round to reading its webhook's 2xx.
        _report(
            ctx,
            "SQLite, burst",
            f"all at once over {BURST_CONNECTIONS} connections; the applier yields to intake in a burst",
            burst["latency_ms"],
            None,
        )
        ctx.add(
            Row(
                "10",
                f"receiver CPU, {WAITERS} long-polls waiting, nothing changing",
                staggered["idle_cpu"] * 100,
                "% of a core",
                note="no polling per waiter: one look at the change feed a second",
            )
        )
        _postgres_round(ctx, work, hole)


def _postgres_round(ctx: Context, work: str, hole: BlackHole) -> None:
    from tests.pg_server import Cluster, bin_dir

    bins = bin_dir()
    if bins is None:
        ctx.log("PostgreSQL binaries not found: the replica round is skipped")
        return
    cluster = Cluster(bins)
    try:
        cluster.init()
        url = cluster.url(cluster.create_database())
        env = {"RECEIVER_DATABASE_URL": url}
        ctx.command("two receivers on one PostgreSQL (RECEIVER_DATABASE_URL): waits on A, webhooks to B")
        with (
            receiver_server(
                ctx, os.path.join(work, "pg-a"), base_url=hole.base_url, name="rx-a", extra_env=env
            ) as a,
            receiver_server(
                ctx, os.path.join(work, "pg-b"), base_url=hole.base_url, name="rx-b", extra_env=env
            ) as b,
        ):
            crossed = asyncio.run(_round(a.url, b.url, "Replicas", 1, None))
        _report(
            ctx,
            "PostgreSQL, waits on A, webhooks to B",
            "staggered; woken by LISTEN/NOTIFY",
            crossed["latency_ms"],
            TARGET_P99_REPLICAS_MS,
        )
    finally:
        cluster.destroy()
