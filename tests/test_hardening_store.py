"""Issue 10, the store's side: one process per data dir and download leases, whole idempotency keys,
readiness that takes a delivery's path, a damaged or deleted database, capped outputs, and an
acknowledged delivery visible to the query API at once.

Real receivers (a thread or `openrouter-video serve` in a subprocess), a real SQLite file, the
simulator over HTTP. The two tests of 16 (what the query API shows right after an acknowledgement)
run on each storage backend (tests/backends.py); the rest are about the SQLite file itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import subprocess
import sys
import time

import httpx
from receiver_support import (
    ReceiverProcess,
    open_test_stores,
    receiver_settings,
    running_receiver,
    signed_event,
    wait_until,
    with_stores,
)

from openrouter_video import VideoJob
from openrouter_video.receiver.domain.events import storable_key
from openrouter_video.receiver.domain.model import Delivery
from openrouter_video.receiver.domain.plan import MAX_OUTPUTS_PER_JOB
from openrouter_video.receiver.storage.sqlite._db import connect


def _serve(settings, port: int) -> subprocess.CompletedProcess:
    """A second `serve` in the foreground: it must refuse, not run (bounded by the timeout)."""
    env = ReceiverProcess(settings).env()
    return subprocess.run(
        [sys.executable, "-m", "openrouter_video._cli", "serve", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


# -- 1. one serving process per data dir; downloads owned by their claimant -----------------------


def test_a_second_receiver_on_the_same_data_dir_refuses_to_start(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    first = ReceiverProcess(settings).start()
    try:
        second = _serve(settings, 0)  # any free port: the data dir is what must refuse it
        assert second.returncode != 0
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, second.stderr
        assert "another receiver" in lines[0] and f"pid {first.process.pid}" in lines[0]
        assert "Traceback" not in second.stderr + second.stdout
        # The first one is untouched and still serving.
        assert httpx.get(f"{first.url}/readyz", timeout=5).status_code == 200
    finally:
        first.stop()
    # Once it is gone, the data dir is free again.
    again = ReceiverProcess(settings).start()
    again.stop()


def test_a_download_is_owned_by_the_worker_that_claimed_it(tmp_path) -> None:
    async def main() -> None:
        a = await open_test_stores("sqlite", tmp_path, worker="A", lease=0.5)
        b = await open_test_stores("sqlite", tmp_path, worker="B", lease=0.5)
        try:
            job = VideoJob.from_api(
                {"id": "jobLease1", "status": "completed", "unsigned_urls": ["https://x/0"]}
            )
            await a.polls.apply_poll(job)
            assert [c.job_id for c in await a.downloads.claim(time.time(), 4)] == ["jobLease1"]
            assert await b.downloads.claim(time.time(), 4) == []  # A holds it
            assert await a.downloads.renew([("jobLease1", 0)]) == 1
            assert await b.downloads.renew([("jobLease1", 0)]) == 0
            # B cannot record an outcome for an output it does not hold.
            assert not await b.downloads.finish(
                "jobLease1", 0, content_key="jobLease1/0.mp4", size=1, sha256="0" * 64
            )
            assert not await b.downloads.retry("jobLease1", 0, next_at=time.time(), error="x")
            # A stops renewing (it died): once the lease ran out, B takes the output over...
            taken = await _wait_async(lambda: b.downloads.claim(time.time(), 4))
            assert [c.job_id for c in taken] == ["jobLease1"]
            # ...and A, back from a stall, can no longer record it.
            assert not await a.downloads.finish(
                "jobLease1", 0, content_key="jobLease1/0.mp4", size=1, sha256="a" * 64
            )
            assert await b.downloads.finish(
                "jobLease1", 0, content_key="jobLease1/0.mp4", size=2, sha256="b" * 64
            )
            record = await a.jobs.get("jobLease1")
            assert record is not None
            assert record.outputs[0].state == "done" and record.outputs[0].sha256 == "b" * 64
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


async def _wait_async(fetch, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await fetch()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


# -- 3. idempotency keys never truncated into a collision ----------------------------------------


def test_events_whose_keys_share_200_characters_are_both_kept(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    prefix = "k" * 200
    with running_receiver(settings) as rx:
        outcomes = []
        for status, suffix in (("in_progress", "-a"), ("completed", "-b")):
            body, headers = signed_event(
                simulator.secret, {"id": "jobLongKey1"}, status=status, key=prefix + suffix
            )
            outcomes.append(httpx.post(rx.webhook_url, content=body, headers=headers).json()["outcome"])
        assert outcomes == ["accepted", "accepted"]
        job = rx.wait_job("jobLongKey1", lambda j: j["status"] == "completed")
        assert job["outputs"], "the completed event was lost: no output queued"
        # The same long key again is a duplicate: the hash covers the whole key.
        body, headers = signed_event(
            simulator.secret, {"id": "jobLongKey1"}, status="completed", key=prefix + "-b"
        )
        assert httpx.post(rx.webhook_url, content=body, headers=headers).json()["outcome"] == "duplicate"
    assert storable_key("x" * 200) == "x" * 200
    assert storable_key(prefix + "-a") != storable_key(prefix + "-b")


# -- 5. readiness takes a delivery's path; a damaged database is refused at start ----------------


def test_readyz_fails_when_deliveries_cannot_be_written(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    with running_receiver(settings) as rx:
        assert rx.get("/readyz").status_code == 200
        with contextlib.closing(connect(settings.db_path)) as conn:
            conn.execute("ALTER TABLE deliveries RENAME TO deliveries_damaged")
        body, headers = signed_event(simulator.secret, {"id": "jobReady1", "status": "pending"})
        assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 503
        ready = rx.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert any("database not writable" in p for p in ready.json()["problems"])


def test_a_damaged_database_is_refused_at_start_with_one_line(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    with running_receiver(settings) as rx:
        for n in range(50):
            body, headers = signed_event(simulator.secret, {"id": f"jobDamage{n}", "status": "pending"})
            assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
        rx.applied()
    with contextlib.closing(connect(settings.db_path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'deliveries_job'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(settings.db_path, "r+b") as fh:  # scribble over an index page of the deliveries table
        fh.seek((root - 1) * page_size + 8)
        fh.write(b"\xff" * 64)
    result = _serve(settings, 0)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is damaged" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# -- 12. outputs per job are capped ---------------------------------------------------------------


def test_an_event_announcing_thousands_of_outputs_queues_only_the_cap(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, download_concurrency=1)
    urls = [f"{simulator.api_base}/videos/jobMany1/content?index={i}" for i in range(5000)]
    with running_receiver(settings) as rx:
        body, headers = signed_event(
            simulator.secret, {"id": "jobMany1", "status": "completed", "unsigned_urls": urls}
        )
        assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
        rx.applied()
        response = rx.get("/jobs/jobMany1")
        job = response.json()
        assert len(job["outputs"]) == MAX_OUTPUTS_PER_JOB
        assert len(response.content) < 64 * 1024
        refused = [e for e in job["events"] if e["kind"] == "outputs_refused"]
        assert len(refused) == 1 and "5000 outputs announced" in refused[0]["detail"]


# -- 16. an acknowledged delivery is visible at once ------------------------------------------------


def test_a_stored_delivery_not_yet_applied_is_visible_to_the_query_api(tmp_path, simulator, backend) -> None:
    settings = backend.settings(str(tmp_path / "data"), simulator)
    with running_receiver(settings) as rx:
        rx.applied()
        # Stored and acknowledged by another store instance (SQLite: the receiver's applier is not
        # woken, it looks again only every few seconds; PostgreSQL: as by another replica): the state
        # right after a 2xx when the applier is behind.
        body, _headers = signed_event(simulator.secret, {"id": "jobSeen1", "status": "in_progress"})
        delivery = Delivery("jobSeen1-in_progress", body, {}, time.time(), int(time.time()))
        with_stores(settings, lambda stores: stores.deliveries.record(delivery), readonly=False)
        response = rx.get("/jobs/jobSeen1")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "in_progress"
        assert rx.get("/jobs/jobNeverSeen").status_code == 404
        rx.applied()
        assert [d["state"] for d in rx.deliveries() if d["job_id"] == "jobSeen1"] == ["applied"]


def test_every_job_is_readable_right_after_its_webhook_is_acknowledged(tmp_path, simulator, backend) -> None:
    settings = backend.settings(str(tmp_path / "data"), simulator)
    with running_receiver(settings) as rx, httpx.Client(timeout=10) as http:
        for n in range(100):
            body, headers = signed_event(simulator.secret, {"id": f"jobAck{n}", "status": "in_progress"})
            assert http.post(rx.webhook_url, content=body, headers=headers).status_code == 200
            assert rx.get(f"/jobs/jobAck{n}").status_code == 200, n


# -- 17. the database file deleted under a running receiver --------------------------------------


def test_a_deleted_database_stops_acknowledgements_loudly(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    process = ReceiverProcess(settings).start()
    try:
        http = httpx.Client(timeout=10)
        body, headers = signed_event(simulator.secret, {"id": "jobGone0", "status": "pending"})
        assert (
            http.post(f"{process.url}/webhooks/openrouter", content=body, headers=headers).status_code == 200
        )
        for path in glob.glob(settings.db_path + "*"):
            os.unlink(path)
        body, headers = signed_event(simulator.secret, {"id": "jobGone1", "status": "pending"})
        answer = http.post(f"{process.url}/webhooks/openrouter", content=body, headers=headers)
        assert answer.status_code == 503, answer.text
        ready = http.get(f"{process.url}/readyz")
        assert ready.status_code == 503 and "deleted or replaced" in json.dumps(ready.json())

        def logged() -> bool:
            with open(process.log_path) as fh:
                return any('"store.file_replaced"' in line and '"critical"' in line for line in fh)

        wait_until(logged, timeout=10, what="a critical log line about the replaced database")
    finally:
        process.stop()
