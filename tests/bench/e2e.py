"""Benchmark 6: end to end on the simulator, from the webhook's send to the MP4 fsynced on disk.

The simulator (`openrouter-video simulate`) and the receiver (`openrouter-video serve`, API base =
the simulator) run as subprocesses on loopback. A batch of jobs is submitted through the client
with the receiver as `callback_url`, each a 2 MB video: first "staggered" (completion times spread
50 ms apart, so each job's latency is its own), then a "burst" (all complete at the same instant,
so the figure includes queueing behind the receiver's download concurrency).

How each job's latency is measured, all on the one machine's wall clock:
- start: the instant the simulator's webhook task is due to send (`finished_at + delay` from
  `GET /_simulator/jobs/{id}`; the task sleeps until then, then builds, signs and POSTs);
- end: the receiver's `outputs.updated_at` for the output in state `done`, read from its database
  afterwards. The fetcher stamps it after `download()` returned, i.e. after the file was fsynced and
  renamed into place (and its directory fsynced), so it is an upper bound of "on disk".
- split: the simulator's delivery log (`GET /_simulator/deliveries`) records when the receiver's
  2xx came back, which splits the total into the webhook leg and the download leg.
"""

from __future__ import annotations

import contextlib
import os
import time

import httpx

from openrouter_video import OpenRouterVideo
from openrouter_video.receiver.storage.sqlite._db import connect

from ._common import API_KEY, Context, Row, percentile, receiver_server, scratch, simulator_server

MODEL = "google/veo-3.1"
VIDEO_BYTES = 2_000_000


def _run_batch(
    ctx: Context, sim_url: str, receiver_url: str, db_path: str, count: int, *, spread: float, label: str
) -> dict[str, list[float]]:
    base_url = sim_url + "/api/v1"
    webhook = receiver_url + "/webhooks/openrouter"
    ids: list[str] = []
    with OpenRouterVideo(api_key=API_KEY, base_url=base_url) as api:
        api.model(MODEL)  # catalog fetched once before the batch
        lead = 1.0 + 0.02 * count  # enough for every submit to land before the first job ends
        submitted_at = time.time()
        for n in range(count):
            in_progress = lead - (time.time() - submitted_at) + n * spread
            job = api.submit(
                f"e2e {label} {n} [sim:pending=0, in_progress={max(0.0, in_progress):.3f}, "
                f"bytes={VIDEO_BYTES}]",
                model=MODEL,
                duration=4,
                callback_url=webhook,
            )
            ids.append(job.id)
    deadline = time.monotonic() + 60 + count * 0.5
    marks = ",".join("?" * len(ids))
    done: dict[str, tuple[float, str]] = {}
    while time.monotonic() < deadline:
        with contextlib.closing(connect(db_path, readonly=True)) as conn:
            done = {
                r[0]: (r[1], r[2])
                for r in conn.execute(
                    f"SELECT job_id, updated_at, content_key FROM outputs WHERE state = 'done' AND idx = 0 "
                    f"AND job_id IN ({marks})",
                    ids,
                )
            }
        if len(done) == len(ids):
            break
        time.sleep(0.2)
    if len(done) != len(ids):
        raise RuntimeError(f"{label}: only {len(done)} of {len(ids)} outputs were downloaded in time")
    with httpx.Client(base_url=sim_url, timeout=30.0, trust_env=False) as http:
        due = {}
        for job_id in ids:
            info = http.get(f"/_simulator/jobs/{job_id}", params={"hash": "0"}).json()
            due[job_id] = info["finished_at"] + info["delay"]
        acks: dict[str, float] = {}
        for attempt in http.get("/_simulator/deliveries").json()["data"]:
            if attempt["job_id"] in due and attempt["status"] and 200 <= attempt["status"] < 300:
                acks[attempt["job_id"]] = min(acks.get(attempt["job_id"], attempt["time"]), attempt["time"])
    for _at, key in done.values():
        path = os.path.join(os.path.dirname(db_path), "videos", key)  # the local content store's layout
        if os.path.getsize(path) != VIDEO_BYTES:
            raise RuntimeError(f"{path} has {os.path.getsize(path)} bytes, expected {VIDEO_BYTES}")
    total = [(done[j][0] - due[j]) * 1000 for j in ids]
    webhook_leg = [(acks[j] - due[j]) * 1000 for j in ids if j in acks]
    download_leg = [(done[j][0] - acks[j]) * 1000 for j in ids if j in acks]
    ctx.log(
        f"{label}: {count} jobs, total p50 {percentile(total, 50):.0f} ms p99 {percentile(total, 99):.0f} ms; "
        f"webhook leg p50 {percentile(webhook_leg, 50):.1f} ms p99 {percentile(webhook_leg, 99):.1f} ms; "
        f"download leg p50 {percentile(download_leg, 50):.0f} ms p99 {percentile(download_leg, 99):.0f} ms"
    )
    return {"total": total, "webhook": webhook_leg, "download": download_leg}


def bench_e2e(ctx: Context) -> None:
    count = 30 if ctx.quick else 100
    with scratch(ctx, "e2e") as work, simulator_server(ctx, work) as sim:
        data_dir = os.path.join(work, "data")
        with receiver_server(ctx, data_dir, base_url=sim.url + "/api/v1") as receiver:
            db_path = os.path.join(data_dir, "receiver.db")
            ctx.command(
                f"client.submit(..., callback_url=http://127.0.0.1:$PORT/webhooks/openrouter) x {count}, "
                f"prompt '[sim:pending=0, in_progress=T, bytes={VIDEO_BYTES}]'"
            )
            ctx.command(
                "GET http://127.0.0.1:$SIM_PORT/_simulator/jobs/$ID?hash=0  (finished_at: webhook due)"
            )
            ctx.command("GET http://127.0.0.1:$SIM_PORT/_simulator/deliveries  (when the 2xx came back)")
            ctx.command("SELECT job_id, updated_at FROM outputs WHERE state = 'done'  (receiver.db: fsynced)")
            staggered = _run_batch(ctx, sim.url, receiver.url, db_path, count, spread=0.05, label="staggered")
            burst = _run_batch(ctx, sim.url, receiver.url, db_path, count, spread=0.0, label="burst")
    for label, result, how in (
        ("staggered", staggered, "completions 50 ms apart"),
        ("burst", burst, "all complete at once"),
    ):
        total, hook, down = result["total"], result["webhook"], result["download"]
        ctx.add(
            Row(
                "6",
                f"e2e {label}: webhook sent -> MP4 fsynced p50",
                percentile(total, 50),
                "ms",
                None,
                note=f"{len(total)} jobs x {VIDEO_BYTES / 1e6:g} MB, {how}",
            )
        )
        ctx.add(
            Row(
                "6",
                f"e2e {label}: webhook sent -> MP4 fsynced p99",
                percentile(total, 99),
                "ms",
                None,
                note=f"webhook leg p50/p99 {percentile(hook, 50):.1f}/{percentile(hook, 99):.1f} ms, "
                f"download leg p50/p99 {percentile(down, 50):.0f}/{percentile(down, 99):.0f} ms",
            )
        )
