"""Three receiver replicas on one PostgreSQL and one S3 server, behind nginx (issue 13, "Replicas").

Everything real and on 127.0.0.1: three `openrouter-video serve` processes (each its own data dir
and port) on one throwaway PostgreSQL cluster (tests/pg_server.py) and one SeaweedFS
(tests/s3_server.py), behind nginx running the shipped deploy/nginx/openrouter-video.conf with the
three as its round-robin upstream (tests/nginx_support.py). The simulator sends signed webhooks to
nginx's https URL; the replicas download the outputs from the simulator into the bucket.

The burst: a few hundred jobs whose webhooks come as duplicate storms (each delivered several times
at once, the copies spread over the replicas by nginx), failed jobs, jobs whose webhook is dropped
(registered, so the fallback polls them), out-of-order events (in_progress and pending after
completed; completed again under a new key), and fresh jobs read back through nginx right after
each acknowledgement. Outputs are mostly small; a few are 20 MiB, served slowly until one of them is
half-way to a replica. One replica is SIGKILLed mid-burst, another mid-download of a large output;
both are restarted on their ports.

Afterwards: every delivery acknowledged (2xx) is in the store, applied; every completed job's
outputs are in the bucket exactly once with the simulator's sha256 and size, and nothing else is;
the simulator sent each output's body once, plus at most one retry for an output whose download was
killed; no job was ever polled by two workers at once; no multipart upload is left after the
replicas' sweep. The figures are printed (pytest -s shows them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from nginx_support import Nginx, require_tool, running_nginx
from receiver_support import AUTH, ReceiverProcess, free_port, receiver_settings, signed_event, wait_until
from support import RunningSimulator, fast_simulator_config, running_simulator

from openrouter_video import IDEMPOTENCY_HEADER

pytestmark = pytest.mark.timeout(420)

REPLICAS = 3
MODEL = "google/veo-3.1"
SEED = 20261313

# The burst (bounded: about 2,600 deliveries, 290 jobs).
SMALL_JOBS = 220  # completed, outputs of 3 KB-400 KB (a fifth with two outputs)
SMALL_COPIES = (8, 12)  # each webhook delivered this many times at once: a duplicate storm
FAILED_JOBS = 20  # failed or cancelled: a storm of copies, no download
FAILED_COPIES = 6
LARGE_JOBS = 4  # completed, one large output each
LARGE_BYTES = 20 * 1024 * 1024  # more than two 8 MiB parts of a multipart upload
LARGE_COPIES = 4
# Bytes/s of the large outputs: crawling until replica A is killed (so they are still downloading
# then), at a pace where a half-way point is caught until B is killed, then at full speed.
RATES = (100_000, 3_000_000, 50_000_000)
POLLED_JOBS = 24  # webhook dropped: registered through nginx, found by the fallback poller
OUT_OF_ORDER_JOBS = 100  # in_progress + pending after completed
REKEYED_JOBS = 30  # completed again under a new idempotency key
READ_BACK_MAX = 150  # fresh cancelled jobs read back through nginx right after their 2xx
KILL_MID_BURST_AT = 0.35  # share of the storm's deliveries acknowledged when replica A is killed
LEASE = 10.0  # seconds a claim (download, poll) outlives its dead worker


def replica_env(pg_url: str, s3: dict[str, str]) -> dict[str, str]:
    return {
        "RECEIVER_DATABASE_URL": pg_url,
        **s3,
        # Claims of a killed replica free up after LEASE s (not the default 60 s), and the sweep of
        # abandoned multipart uploads runs once a lease.
        "RECEIVER_CLAIM_LEASE": str(LEASE),
    }


@dataclass
class Replica:
    name: str
    process: ReceiverProcess
    kills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    @property
    def alive(self) -> bool:
        return self.process.process is not None and self.process.process.poll() is None


class World:
    """The running stack, plus what the test sent and saw."""

    def __init__(
        self, sim: RunningSimulator, nginx: Nginx, replicas: list[Replica], pg_url: str, s3: Any, bucket: str
    ):
        self.sim = sim
        self.nginx = nginx
        self.replicas = replicas
        self.pg_url = pg_url
        self.s3 = s3
        self.bucket = bucket
        self.http = nginx.client(timeout=30)
        self.jobs: dict[str, dict[str, Any]] = {}  # job id -> kind, outputs, sizes...
        self.own_sent: Counter[str] = Counter()  # our own deliveries through nginx: sent / acked / refused
        self.own_acked: set[str] = set()  # idempotency keys of our own deliveries answered 2xx
        self.read_back = 0
        self.out_of_order_sent: set[str] = set()
        self.out_of_order_queue: list[str] = []  # jobs to send stale events for, once completed
        # "<job>/<index>": how many of its downloads a kill cut off (both kills may hit one output:
        # A's claim runs out, B takes it over, and B is killed too).
        self.interrupted: Counter[str] = Counter()
        self.started = time.monotonic()
        self.marks: dict[str, float] = {}

    def mark(self, what: str) -> None:
        self.marks[what] = time.monotonic() - self.started

    # -- the database and the bucket, read directly ------------------------------------------------

    def sql(self, query: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def objects(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found

    def uploads(self) -> list[dict[str, Any]]:
        return self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    # -- the simulator -------------------------------------------------------------------------------

    def attempts(self) -> list[Any]:
        return self.sim.state.deliveries.list()

    def acked_storm(self) -> int:
        return self.sim.state.deliveries.totals()["acked"]

    def served(self) -> dict[str, dict[str, int]]:
        return self.sim.state.served.snapshot()

    # -- our own deliveries through nginx ----------------------------------------------------------------

    def send(self, data: dict[str, Any], *, status: str, key: str | None = None) -> httpx.Response | None:
        body, headers = signed_event(self.sim.secret, data, status=status, key=key)
        self.own_sent["sent"] += 1
        try:
            response = self.http.post(self.nginx.webhook_url, content=body, headers=headers)
        except httpx.TransportError:
            self.own_sent["unanswered"] += 1
            return None
        if 200 <= response.status_code < 300:
            self.own_sent["acked"] += 1
            self.own_acked.add(headers[IDEMPOTENCY_HEADER])
        else:
            self.own_sent[f"refused {response.status_code}"] += 1
        return response

    def read_back_one(self) -> None:
        """A fresh job's event through nginx, then at once its record through nginx (any replica)."""
        if self.read_back >= READ_BACK_MAX:
            return
        self.read_back += 1
        job_id = f"jobReadBack{self.read_back:04d}"
        response = self.send({"id": job_id, "model": MODEL, "error": "Job was cancelled"}, status="cancelled")
        if response is None or response.status_code != 200:
            return  # not acknowledged: nothing to read back (a sender would deliver it again)
        record = self.http.get(f"{self.nginx.https_url}/jobs/{job_id}", headers=AUTH)
        assert record.status_code == 200, (job_id, record.status_code, record.text)
        assert record.json()["status"] == "cancelled", record.json()

    def out_of_order(self) -> None:
        """Stale events for a completed job, once the replicas show it completed (through nginx):
        in_progress and pending after it; some completed again under a new key (must not queue a
        second download). One job per step, the next one due."""
        now = time.monotonic()
        due = [j for j in self.out_of_order_queue if self.jobs[j]["terminal"] <= now]
        if not due:
            return
        job_id = due[0]
        record = self.http.get(f"{self.nginx.https_url}/jobs/{job_id}", headers=AUTH)
        if record.status_code != 200 or record.json()["status"] != "completed":
            self.out_of_order_queue.remove(job_id)
            self.out_of_order_queue.append(job_id)  # not yet: try the others first
            return
        self.out_of_order_queue.remove(job_id)
        self.out_of_order_sent.add(job_id)
        info = self.jobs[job_id]
        data = {"id": job_id, "model": MODEL}
        self.send(data, status="in_progress")
        self.send(data, status="pending")
        if info.get("rekeyed"):
            urls = [f"{self.sim.api_base}/videos/{job_id}/content?index={i}" for i in range(info["outputs"])]
            self.send({**data, "unsigned_urls": urls}, status="completed", key=f"{job_id}-completed-again")

    def summary(self) -> str:
        """Where things stand (for a timeout's message)."""
        attempts = self.attempts()
        return json.dumps(
            {
                "simulator attempts": Counter(
                    str(a.status or (a.error or "").split(":")[0]) for a in attempts
                ),
                "webhook tasks pending": self.sim.state.pending_deliveries,
                "our own": dict(self.own_sent),
                "replicas alive": [r.alive for r in self.replicas],
                "served": self.sim.state.served.totals(),
                "polled": self.sim.state.polled.totals(),
            },
            default=str,
        )

    def pace(self, job_ids: list[str], rate: float) -> None:
        """The simulator's content throttle of these jobs, changed live (bodies in flight too)."""
        for job_id in job_ids:
            answer = httpx.post(
                f"{self.sim.admin_url}/jobs/{job_id}", params={"hash": 0}, json={"rate": rate}
            )
            answer.raise_for_status()

    def step(self) -> None:
        self.out_of_order()
        self.read_back_one()

    def run_until(self, condition, timeout: float, what: str) -> Any:
        """Drive our own traffic while waiting for `condition` (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: {self.summary()}")
            self.step()
            time.sleep(0.05)  # the driver's pace: it shares the test process with the simulator

    # -- kills -----------------------------------------------------------------------------------------

    def kill(self, replica: Replica, why: str) -> None:
        pid = replica.pid
        replica.process.kill()
        # Dead now: what it had claimed stays claimed until the lease runs out; its downloads in flight
        # were cut off (each may be served once more).
        claimed = self.sql(
            "SELECT job_id, idx FROM outputs WHERE state = 'downloading' AND claimed_by LIKE %s",
            f"%:{pid}:%",
        )
        cut = {f"{job}/{idx}" for job, idx in claimed}
        self.interrupted.update(cut)
        replica.kills.append(
            {"why": why, "pid": pid, "at": round(time.monotonic() - self.started, 1), "cut": sorted(cut)}
        )


def submit(sim: RunningSimulator, client: httpx.Client, prompt: str, callback_url: str) -> str:
    body = {"model": MODEL, "prompt": prompt, "duration": 4, "callback_url": callback_url}
    response = client.post(f"{sim.api_base}/videos", json=body, headers=sim.headers)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def submit_jobs(world: World, rng: random.Random) -> None:
    """Every job of the burst, submitted at once: their webhooks fall due over the next ~15 s."""
    hook = world.nginx.webhook_url
    with httpx.Client(timeout=30) as client:
        for n in range(LARGE_JOBS):
            # Done early, downloaded slowly: one of them is half-way when a replica is killed.
            job_id = submit(
                world.sim, client,
                f"large {n} [sim:pending=0.1, in_progress={1 + n}, bytes={LARGE_BYTES}, copies={LARGE_COPIES}, rate={RATES[0]}]",
                hook,
            )  # fmt: skip
            world.jobs[job_id] = {"kind": "large", "outputs": 1, "bytes": LARGE_BYTES, "copies": LARGE_COPIES}
        for n in range(SMALL_JOBS):
            outputs = 2 if n % 5 == 0 else 1
            size = rng.choice([3_000, 20_000, 60_000, 150_000, 400_000])
            copies = rng.randint(*SMALL_COPIES)
            in_progress, delay = rng.uniform(0.5, 15), rng.uniform(0, 0.3)
            job_id = submit(
                world.sim, client,
                f"small {n} [sim:pending=0.1, in_progress={in_progress:.2f}, bytes={size}, "
                f"outputs={outputs}, copies={copies}, delay={delay:.2f}]",
                hook,
            )  # fmt: skip
            world.jobs[job_id] = {
                "kind": "small",
                "outputs": outputs,
                "copies": copies,
                "bytes": size,
                "terminal": time.monotonic() + 0.1 + in_progress + delay,
                "out_of_order": n < OUT_OF_ORDER_JOBS,
                "rekeyed": n < REKEYED_JOBS,
            }
            if n < OUT_OF_ORDER_JOBS:
                world.out_of_order_queue.append(job_id)
        for n in range(FAILED_JOBS):
            outcome = "failed" if n % 2 else "cancelled"
            job_id = submit(
                world.sim, client,
                f"failed {n} [sim:pending=0.1, in_progress={rng.uniform(0.5, 12):.2f}, outcome={outcome}, copies={FAILED_COPIES}]",
                hook,
            )  # fmt: skip
            world.jobs[job_id] = {"kind": outcome, "outputs": 0, "copies": FAILED_COPIES}
        for n in range(POLLED_JOBS):
            job_id = submit(
                world.sim, client,
                f"polled {n} [sim:pending=0.1, in_progress={rng.uniform(2, 10):.2f}, bytes=30000, webhook=drop]",
                hook,
            )  # fmt: skip
            world.jobs[job_id] = {"kind": "polled", "outputs": 1, "bytes": 30_000, "copies": 0}
            registered = world.http.post(
                f"{world.nginx.https_url}/jobs", json={"id": job_id, "model": MODEL}, headers=AUTH
            )
            assert registered.status_code == 201, registered.text


@contextlib.contextmanager
def replica_stack(tmp: Path, pg_url: str, s3_server: Any, bucket: str) -> Iterator[World]:
    ports = [free_port() for _ in range(REPLICAS)]
    with running_nginx(tmp, ports, worker_connections=1024) as nginx:
        config = fast_simulator_config(
            webhook_cafile=nginx.cert, webhook_attempts=8, webhook_backoff=0.2, webhook_timeout=15.0
        )
        with running_simulator(config) as sim:
            # Polls held 0.15 s: two workers polling one job at once would overlap, and be counted.
            sim.config.faults.update({"poll_latency": 0.15})
            env = replica_env(pg_url, s3_server.env(bucket))
            replicas = []
            for n, port in enumerate(ports):
                settings = receiver_settings(
                    str(tmp / f"replica-{n}"),
                    sim,
                    fallback_after=1.0,
                    poll_first_interval=0.3,
                    poll_max_interval=0.6,
                    download_retry_initial=0.2,
                    download_retry_cap=1.0,
                    download_concurrency=3,
                )
                process = ReceiverProcess(
                    settings, port=port, extra_args=["--trusted-proxies", "127.0.0.1"], extra_env=env
                )
                replicas.append(Replica(f"replica-{n}", process))
            try:
                for replica in replicas:
                    replica.process.start()
                yield World(sim, nginx, replicas, pg_url, s3_server.client(), bucket)
            finally:
                for replica in replicas:
                    replica.process.stop()


def test_three_replicas_behind_nginx_lose_nothing_and_do_nothing_twice(
    tmp_path: Path, pg_cluster, pg_database: str, s3_server
) -> None:
    require_tool("nginx")
    rng = random.Random(SEED)
    pg_url = pg_cluster.url(pg_database)
    bucket = s3_server.new_bucket()
    with replica_stack(tmp_path, pg_url, s3_server, bucket) as world:
        submit_jobs(world, rng)
        world.mark("submitted")
        storm = sum(info["copies"] for info in world.jobs.values())  # webhook deliveries the simulator sends

        # 1. Replica A is SIGKILLed once a third of the storm has been acknowledged.
        a = world.replicas[0]
        world.run_until(
            lambda: world.acked_storm() >= KILL_MID_BURST_AT * storm,
            timeout=90,
            what=f"{KILL_MID_BURST_AT:.0%} of the storm acknowledged",
        )
        world.kill(a, "mid-burst")
        world.mark("A killed")

        # 2. Replica B is SIGKILLed half-way through a large output: the simulator is sending it, B holds
        # the claim, and the multipart upload has begun (its first 8 MiB part is in).
        large_jobs = [j for j, info in world.jobs.items() if info["kind"] == "large"]
        large = {f"{j}/0" for j in large_jobs}
        world.pace(large_jobs, RATES[1])

        def downloading_large() -> Replica | None:
            uploading = {u["Key"].removeprefix("videos/").removesuffix(".mp4") for u in world.uploads()}
            served = world.served()
            in_flight = {k for k in large & uploading if served.get(k, {}).get("in_flight")}
            if not in_flight:
                return None
            rows = world.sql(
                "SELECT claimed_by FROM outputs WHERE state = 'downloading' AND idx = 0 AND job_id = ANY(%s)",
                [k.split("/")[0] for k in in_flight],
            )
            for replica in world.replicas:
                if replica.alive and any(f":{replica.pid}:" in (by or "") for (by,) in rows):
                    return replica
            return None

        b = world.run_until(
            downloading_large, timeout=120, what="a live replica half-way through a large output"
        )
        world.kill(b, "mid-download")
        world.mark("B killed")
        assert set(b.kills[-1]["cut"]) & large, (b.kills, "the kill cut off no large download")
        world.pace(large_jobs, RATES[2])

        # 3. Both come back on their ports (nginx finds them there again).
        a.process.start()
        b.process.start()
        world.mark("A and B restarted")

        # 4. The storm ends: every webhook task of the simulator has finished, our own traffic is sent.
        world.run_until(
            lambda: (
                world.sim.state.pending_deliveries == 0
                and len(world.out_of_order_sent) >= OUT_OF_ORDER_JOBS
                and world.read_back >= READ_BACK_MAX
            ),
            timeout=120,
            what="the end of the storm",
        )
        world.mark("storm over")

        # 5. Everything settles: deliveries applied, every completed job's outputs done.
        completed = {j: info for j, info in world.jobs.items() if info["outputs"]}

        def settled() -> bool:
            if world.sql("SELECT count(*) FROM deliveries WHERE state = 'pending'")[0][0]:
                return False
            rows = world.sql("SELECT count(*) FROM outputs WHERE state = 'done'")
            return rows[0][0] == sum(info["outputs"] for info in completed.values())

        wait_until(
            settled, timeout=120, interval=0.2, what="every delivery applied and every output downloaded"
        )
        world.mark("settled")
        # 6. The sweep: the upload of the killed download (and any other cut off) is aborted by a replica.
        wait_until(lambda: world.uploads() == [], timeout=60, interval=0.5, what="no multipart upload left")
        world.mark("swept")

        check_and_report(world, completed)


def check_and_report(world: World, completed: dict[str, dict[str, Any]]) -> None:
    attempts = world.attempts()
    acked_attempts = [a for a in attempts if a.status is not None and 200 <= a.status < 300]
    acked_keys = {a.headers[IDEMPOTENCY_HEADER] for a in acked_attempts} | world.own_acked

    # Every acknowledged delivery is stored, and applied.
    stored = dict(world.sql("SELECT idempotency_key, state FROM deliveries"))
    missing = acked_keys - set(stored)
    assert not missing, (
        f"{len(missing)} acknowledged deliveries are not in the store, e.g. {sorted(missing)[:5]}"
    )
    assert set(Counter(stored.values())) <= {"applied"}, Counter(stored.values())

    # Jobs: completed ones with their outputs, failed ones failed, stale events did not move anything.
    statuses = dict(world.sql("SELECT id, status FROM jobs"))
    for job_id, info in world.jobs.items():
        expected = {"failed": "failed", "cancelled": "cancelled"}.get(info["kind"], "completed")
        assert statuses.get(job_id) == expected, (job_id, info, statuses.get(job_id))
    stale = Counter(job for (job,) in world.sql("SELECT job_id FROM job_events WHERE kind = 'stale'"))
    for job_id in world.out_of_order_sent:
        assert stale[job_id] >= 2, (job_id, stale[job_id])

    # Outputs: each done once, with the simulator's sha256 and size; in the bucket exactly once.
    outputs = {
        f"{job}/{idx}": (state, size, sha, key)
        for job, idx, state, size, sha, key in world.sql(
            "SELECT job_id, idx, state, bytes, sha256, content_key FROM outputs"
        )
    }
    expected_outputs = {f"{j}/{i}" for j, info in completed.items() for i in range(info["outputs"])}
    assert set(outputs) == expected_outputs
    objects = world.objects()
    assert len(objects) == len(expected_outputs), (len(objects), len(expected_outputs))
    prefix = "videos/"
    sim_jobs = {j: world.sim.state.jobs.get(j) for j in completed}
    from openrouter_video._simulator._mp4 import content_sha256

    for name, (state, size, sha, key) in outputs.items():
        job_id, index = name.split("/")
        job = sim_jobs[job_id]
        assert job is not None
        expected_sha = content_sha256(job.id, int(index), job.bytes, job.video)
        assert (state, size, sha) == ("done", job.bytes, expected_sha), (name, state, size, sha)
        assert objects.get(prefix + key) == job.bytes, (name, key, objects.get(prefix + key))
        body = world.s3.get_object(Bucket=world.bucket, Key=prefix + key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == expected_sha, name

    # The simulator sent each body once, plus at most one retry where a kill cut a download off.
    served = world.served()
    twice = {}
    for name in expected_outputs:
        item = served.get(name, {"started": 0, "completed": 0})
        allowed = 1 + world.interrupted[name]  # once, plus one retry per download a kill cut off
        assert item["completed"] >= 1, (name, item)
        if item["started"] > allowed:
            twice[name] = item
    assert not twice, f"served more than allowed: {twice} (cut off by kills: {dict(world.interrupted)})"
    assert set(served) <= expected_outputs

    # Fallback polls: never two at once for one job.
    polled = world.sim.state.polled.snapshot()
    overlapping = {j: p for j, p in polled.items() if p["max_concurrent"] > 1}
    assert not overlapping, overlapping
    polled_jobs = [j for j, info in world.jobs.items() if info["kind"] == "polled"]
    assert all(polled.get(j, {}).get("count", 0) >= 1 for j in polled_jobs)

    # What it measured.
    retries = sum(1 for a in attempts if a.attempt > 1)
    refused = Counter(
        a.status or a.error.split(":")[0] for a in attempts if not (a.status and 200 <= a.status < 300)
    )
    report = {
        "replicas": REPLICAS,
        "jobs": len(world.jobs),
        "deliveries sent (simulator attempts + our own)": len(attempts) + world.own_sent["sent"],
        "acknowledged (2xx)": len(acked_attempts) + world.own_sent["acked"],
        "distinct deliveries stored": len(stored),
        "duplicates answered": len(acked_attempts) + world.own_sent["acked"] - len(acked_keys),
        "simulator redeliveries (attempt > 1)": retries,
        "simulator attempts not acknowledged": dict(refused),
        "our own deliveries": dict(world.own_sent),
        "read back through nginx right after the 2xx": world.read_back,
        "outputs stored": len(expected_outputs),
        "bytes stored": sum(objects.values()),
        "bodies served started/completed": (
            sum(s["started"] for s in served.values()),
            sum(s["completed"] for s in served.values()),
        ),
        "downloads cut off by the kills": dict(world.interrupted),
        "fallback polls": sum(p["count"] for p in polled.values()),
        "most polls of one job at once": max((p["max_concurrent"] for p in polled.values()), default=0),
        "kills": {r.name: r.kills for r in world.replicas if r.kills},
        "timeline (s)": {k: round(v, 1) for k, v in world.marks.items()},
    }
    print("\nreplica test measured:\n" + json.dumps(report, indent=2, default=str))
