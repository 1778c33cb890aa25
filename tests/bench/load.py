"""Load for benchmarks 1 and 2: pre-signed webhook requests, wrk (or a Python fallback), a genuine sender.

    python -m tests.bench.load sender --port P --rate 50 --duration 10 --out result.json

sends correctly signed, distinct deliveries at a fixed rate over one keep-alive connection and
records each one's latency (used during the forged flood of benchmark 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pickle
import re
import secrets
import string
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign

from ._common import BENCH_DIR, WEBHOOK_SECRET, Context, percentile

WEBHOOK_PATH = "/webhooks/openrouter"
LUA_SCRIPT = os.path.join(BENCH_DIR, "wrk_replay.lua")
_ALNUM = string.ascii_letters + string.digits


def run_tag() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(6))


def job_id_for(created: int, tag: str, index: int) -> str:
    """A job id of OpenRouter's newest format, `gen-vid-<seconds>-<20 alphanumerics>`, unique per index."""
    return f"gen-vid-{created}-{tag}{index:014d}"


def completed_event(job_id: str, created: int) -> bytes:
    """A `video.generation.completed` webhook body (about 600 bytes, like a real one with signed URLs)."""
    origin = "https://openrouter.ai"
    expires = created + 3600
    data = {
        "generation_id": f"gen-{created}-{job_id[-20:]}",
        "id": job_id,
        "model": "google/veo-3.1",
        "status": "completed",
        "unsigned_urls": [f"{origin}/api/v1/videos/{job_id}/content?index=0"],
        "urls": [f"https://storage.openrouter.ai/v/{job_id}/0.mp4?expires={expires}&sig={'ab12' * 16}"],
        "expires_at": expires,
        "usage": {"cost": 1.6, "is_byok": False},
    }
    event = {"type": "video.generation.completed", "created_at": "2026-11-21T10:00:00.000Z", "data": data}
    return json.dumps(event, separators=(",", ":")).encode()


def signed_headers(
    body: bytes, key: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None, forged: bool = False
) -> dict[str, str]:
    signing_secret = f"not-the-{secret}" if forged else secret
    return {
        "Content-Type": "application/json",
        "User-Agent": "openrouter-video-bench",
        SIGNATURE_HEADER: sign(signing_secret, body, timestamp),
        IDEMPOTENCY_HEADER: key,
        # The receiver echoes a sane X-Request-ID: wrk learns which deliveries were acknowledged.
        "X-Request-ID": key,
    }


def raw_request(body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {WEBHOOK_PATH} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class RequestSet:
    directory: str
    count: int
    files: int
    body_bytes: int
    timestamp: int
    forged: bool


def write_requests(directory: str, count: int, files: int, *, forged: bool = False) -> RequestSet:
    """`count` distinct deliveries, each signed now (fresh for the 300 s tolerance), split over `files` files."""
    os.makedirs(directory, exist_ok=True)
    now = int(time.time())
    tag = run_tag()
    handles = [open(os.path.join(directory, f"requests-{n}.bin"), "wb") for n in range(files)]  # noqa: SIM115
    body_bytes = 0
    try:
        for index in range(count):
            job_id = job_id_for(now, tag, index)
            body = completed_event(job_id, now)
            body_bytes = len(body)
            request = raw_request(
                body, signed_headers(body, f"{job_id}-completed", timestamp=now, forged=forged)
            )
            handles[index % files].write(request + b"\0")
    finally:
        for handle in handles:
            handle.close()
    return RequestSet(directory, count, files, body_bytes, now, forged)


# -- wrk -----------------------------------------------------------------------------------------


def run_wrk(
    ctx: Context,
    wrk: str,
    url: str,
    requests: RequestSet,
    *,
    duration: float,
    connections: int,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Run wrk with the replay script; the result dict of its done(), plus `acked` (request ids of 2xx)."""
    for name in ("result.json", "acked.txt"):
        path = os.path.join(requests.directory, name)
        if os.path.exists(path):
            os.unlink(path)
    argv = [
        wrk,
        f"-t{requests.files}",
        f"-c{connections}",
        f"-d{int(duration)}s",
        f"--timeout={int(timeout)}s",
        "--latency",
        "-s",
        LUA_SCRIPT,
        url + WEBHOOK_PATH,
    ]
    ctx.command(
        ["wrk", *argv[1:-1], "http://127.0.0.1:$PORT" + WEBHOOK_PATH], {"BENCH_WRK_DIR": "$REQUESTS_DIR"}
    )
    env = {**os.environ, "BENCH_WRK_DIR": requests.directory}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 120, check=False)
    result_path = os.path.join(requests.directory, "result.json")
    if proc.returncode != 0 or not os.path.exists(result_path):
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]} {proc.stdout[-2000:]}")
    with open(result_path) as fh:
        result = json.load(fh)
    with open(os.path.join(requests.directory, "acked.txt")) as fh:
        result["acked"] = [line.strip() for line in fh if line.strip()]
    result["tool"] = "wrk"
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


# -- Python fallback (when wrk is unavailable) -------------------------------------------------------

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_REQUEST_ID = re.compile(rb"\r\nx-request-id:\s*([^\r]+)", re.IGNORECASE)


def _worker(port: int, path: str, connections: int, duration: float, out_path: str) -> None:
    with open(path, "rb") as fh:
        requests = fh.read().split(b"\0")[:-1]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    acked: list[str] = []
    counts = {"sent": 0, "duplicates": 0}
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}

    async def connection(first: int, stop_at: float) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            errors["connect"] += 1
            return
        index = first
        try:
            while time.perf_counter() < stop_at:
                request = requests[index % len(requests)]
                index += connections
                started = time.perf_counter()
                counts["sent"] += 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = _CONTENT_LENGTH.search(head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                latencies.append(time.perf_counter() - started)
                status = head[9:12].decode()
                statuses[status] = statuses.get(status, 0) + 1
                if status.startswith("2"):
                    counts["duplicates"] += b'"duplicate"' in body
                    rid = _REQUEST_ID.search(head)
                    if rid:
                        acked.append(rid.group(1).decode().strip())
                elif int(status) > 399:
                    errors["status"] += 1
        except (OSError, asyncio.IncompleteReadError):
            errors["read"] += 1
        finally:
            writer.close()

    async def main() -> None:
        stop_at = time.perf_counter() + duration
        await asyncio.gather(*(connection(n, stop_at) for n in range(connections)))

    asyncio.run(main())
    with open(out_path, "wb") as fh:
        pickle.dump(
            {"latencies": latencies, "statuses": statuses, "acked": acked, "errors": errors, **counts}, fh
        )


def run_python_load(
    ctx: Context, url: str, requests: RequestSet, *, duration: float, connections: int
) -> dict[str, Any]:
    """A multi-process asyncio load generator; on a 2-core box it is itself the bottleneck."""
    port = int(url.rsplit(":", 1)[1])
    ctx.command(
        f"python -c 'tests.bench.load.run_python_load' ({requests.files} processes, {connections} "
        f"connections, {duration:.0f} s)"
    )
    per = [
        connections // requests.files + (1 if n < connections % requests.files else 0)
        for n in range(requests.files)
    ]
    procs = []
    started = time.perf_counter()
    mp = multiprocessing.get_context("spawn")
    for n in range(requests.files):
        out = os.path.join(requests.directory, f"py-result-{n}.pickle")
        proc = mp.Process(
            target=_worker,
            args=(port, os.path.join(requests.directory, f"requests-{n}.bin"), per[n], duration, out),
        )
        proc.start()
        procs.append((proc, out))
    merged: dict[str, Any] = {
        "latencies": [],
        "statuses": {},
        "acked": [],
        "sent": 0,
        "duplicates": 0,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
    }
    for proc, out in procs:
        proc.join(duration + 60)
        if proc.is_alive():
            proc.kill()
            proc.join()
        with open(out, "rb") as fh:
            part = pickle.load(fh)
        os.unlink(out)
        merged["latencies"] += part["latencies"]
        merged["acked"] += part["acked"]
        merged["sent"] += part["sent"]
        merged["duplicates"] += part["duplicates"]
        for k, v in part["statuses"].items():
            merged["statuses"][k] = merged["statuses"].get(k, 0) + v
        for k, v in part["errors"].items():
            merged["errors"][k] += v
    elapsed = time.perf_counter() - started
    lat = merged.pop("latencies")
    us = [x * 1e6 for x in lat]
    ok = sum(v for k, v in merged["statuses"].items() if k.startswith("2"))
    return {
        **merged,
        "tool": "python",
        "requests": len(lat),
        "duration_us": int(min(elapsed, duration) * 1e6),
        "ok": ok,
        "bad": len(lat) - ok,
        "wraps": 0,
        "rate": len(lat) / duration,
        "latency_us": {
            "min": min(us, default=0),
            "mean": sum(us) / max(1, len(us)),
            "max": max(us, default=0),
            "p50": percentile(us, 50),
            "p90": percentile(us, 90),
            "p99": percentile(us, 99),
            "p999": percentile(us, 99.9),
        },
    }


def run_load(
    ctx: Context, wrk: str | None, url: str, requests: RequestSet, *, duration: float, connections: int
) -> dict[str, Any]:
    if wrk:
        return run_wrk(ctx, wrk, url, requests, duration=duration, connections=connections)
    return run_python_load(ctx, url, requests, duration=duration, connections=connections)


# -- the genuine sender of benchmark 2 ---------------------------------------------------------------


def genuine_sender(port: int, rate: float, duration: float, out: str) -> None:
    import httpx

    tag = run_tag()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    count = int(rate * duration)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0, trust_env=False) as http:
        http.get("/healthz")  # open the keep-alive connection before the clock starts
        began = time.perf_counter()
        for index in range(count):
            wait = began + index / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            now = int(time.time())
            job_id = job_id_for(now, "G" + tag, index)
            body = completed_event(job_id, now)
            headers = signed_headers(body, f"{job_id}-completed", timestamp=now)
            started = time.perf_counter()
            try:
                status = str(http.post(WEBHOOK_PATH, content=body, headers=headers).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    with open(out, "w") as fh:
        json.dump({"sent": count, "latencies": latencies, "statuses": statuses}, fh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sender = sub.add_parser("sender", help="send genuine deliveries at a fixed rate")
    sender.add_argument("--port", type=int, required=True)
    sender.add_argument("--rate", type=float, default=50.0)
    sender.add_argument("--duration", type=float, default=10.0)
    sender.add_argument("--out", required=True)
    args = parser.parse_args()
    genuine_sender(args.port, args.rate, args.duration, args.out)


if __name__ == "__main__":
    main()
