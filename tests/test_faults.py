"""The receiver when things break: SIGKILL mid-burst, a full disk, and an unreliable upstream.

Real processes and sockets on loopback, the simulator over HTTP. The SIGKILL mid-burst, duplicate
storm, out-of-order and half-written-content tests run on each storage backend (tests/backends.py:
a SQLite file and videos folder; PostgreSQL and S3) and read what is stored through the store
interfaces or the HTTP API; the full disk is the local folder's (SQLite only). The
SIGKILL-during-downloads case lives in test_receiver.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from receiver_support import (
    AUTH,
    ReceiverProcess,
    receiver_settings,
    running_receiver,
    signed_event,
    wait_applied,
    wait_until,
    with_stores,
)

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, OpenRouterVideo, sign
from openrouter_video.receiver.domain.model import DeliveryRecord, JobRecord
from openrouter_video.receiver.settings import Secret
from openrouter_video.receiver.storage.base import Stores


@pytest.fixture
def api(simulator):
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as client:
        yield client


def sim_sha256(simulator, job_id: str, index: int = 0) -> str:
    return httpx.get(f"{simulator.admin_url}/jobs/{job_id}", timeout=30).json()["outputs"][index]["sha256"]


def sim_deliveries(simulator, job_id: str) -> list[dict]:
    return httpx.get(f"{simulator.admin_url}/deliveries", params={"job_id": job_id}, timeout=10).json()[
        "data"
    ]


def sim_stats(simulator) -> dict:
    return httpx.get(f"{simulator.admin_url}/stats", timeout=10).json()["requests"]


def metric(rx, line_start: str) -> float:
    for line in rx.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


# -- 1. SIGKILL in the middle of a burst ------------------------------------------------------------


async def _burst(
    url: str, deliveries: list[tuple[str, bytes, dict]], kill_after: int | None, kill
) -> tuple[dict[str, str], list[tuple[str, int]], int]:
    """POST every delivery from 64 concurrent tasks; SIGKILL the receiver after `kill_after` 2xx."""
    acked: dict[str, str] = {}
    refused: list[tuple[str, int]] = []
    unanswered = 0
    queue: asyncio.Queue = asyncio.Queue()
    for item in deliveries:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal unanswered
            while not queue.empty():
                key, body, headers = queue.get_nowait()
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.TransportError:
                    unanswered += 1
                    continue
                if 200 <= response.status_code < 300:
                    acked[key] = response.json()["outcome"]
                    if kill_after is not None and len(acked) == kill_after:
                        kill()
                else:
                    refused.append((key, response.status_code))

        await asyncio.gather(*(worker() for _ in range(64)))
    return acked, refused, unanswered


def stored_after(settings, job_ids: list[str]) -> tuple[dict[str, DeliveryRecord], dict[str, JobRecord]]:
    """What the store holds: every delivery by idempotency key, and the records of those of
    `job_ids` it knows, read through the store interfaces (whatever the backend)."""

    async def read(stores: Stores) -> tuple[dict[str, DeliveryRecord], dict[str, JobRecord]]:
        page = await stores.deliveries.page(state=None, cursor=None, limit=10**9)
        records = {}
        for job_id in job_ids:
            if (record := await stores.jobs.get(job_id)) is not None:
                records[job_id] = record
        return {d.idempotency_key: d for d in page.items}, records

    return with_stores(settings, read)


def effects(record: JobRecord | None) -> list[str]:
    """The statuses of the webhook deliveries applied to a job: one event each (status, stale or
    conflict), whatever order they came in."""
    return sorted(e.status or "" for e in (record.events if record else ()) if e.source == "webhook")


def test_sigkill_mid_burst_loses_no_acknowledged_delivery(tmp_path, simulator, backend) -> None:
    settings = backend.settings(str(tmp_path / "data"), simulator)
    deliveries = []
    sent: dict[str, tuple[str, str]] = {}  # idempotency key -> (job id, status)
    for i in range(1000):
        for status in ("in_progress", "failed"):
            data = {"id": f"jobBurst{i:04d}", "status": status, "model": "google/veo-3.1"}
            if status == "failed":
                data["error"] = "Content policy violation"
            body, headers = signed_event(simulator.secret, data)
            deliveries.append((headers[IDEMPOTENCY_HEADER], body, headers))
            sent[headers[IDEMPOTENCY_HEADER]] = (data["id"], status)
    job_ids = sorted({job_id for job_id, _status in sent.values()})
    random.Random(20261121).shuffle(deliveries)
    proc = ReceiverProcess(settings).start()
    try:
        url = f"{proc.url}/webhooks/openrouter"
        acked, refused, unanswered = asyncio.run(
            _burst(url, deliveries, 600, lambda: os.kill(proc.process.pid, signal.SIGKILL))
        )
        proc.process.wait(10)
        assert proc.process.returncode == -signal.SIGKILL
        assert refused == []  # before the kill every answer was a 2xx; after it, no answer at all
        assert 600 <= len(acked) < len(deliveries) and unanswered > 0, (len(acked), unanswered)

        # What is stored, read through the store interfaces after the crash (SQLite recovers the WAL;
        # PostgreSQL rolled back what the dead process had not committed).
        stored, jobs = stored_after(settings, job_ids)
        missing = set(acked) - set(stored)
        assert not missing, f"{len(missing)} acknowledged deliveries were lost, e.g. {sorted(missing)[:5]}"
        applied: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
        for key, row in stored.items():
            # A delivery is applied (its effect committed with the mark, exactly once) or still pending
            # (no effect yet): never half of it.
            assert row.state in ("applied", "pending"), key
            job_id, status = sent[key]
            if row.state == "applied":
                assert row.job_id == job_id, key
                applied[job_id].append(status)
        for job_id in job_ids:
            # One event per applied delivery of the job, none for a pending one.
            assert effects(jobs.get(job_id)) == sorted(applied[job_id]), job_id
            assert (job_id in jobs) == bool(applied[job_id]), job_id
            if "failed" in applied[job_id]:
                assert jobs[job_id].status == "failed", job_id
        # Deliveries committed but not answered are possible, but only the ones in flight at the kill.
        assert len(set(stored) - set(acked)) <= 64  # one request in flight per sender

        proc = ReceiverProcess(settings, port=proc.port).start()

        # The restarted receiver applies what the crash left pending, each exactly once.
        wait_applied(settings, timeout=30)
        stored, jobs = stored_after(settings, job_ids)
        assert {row.state for row in stored.values()} == {"applied"}
        for job_id in job_ids:
            assert effects(jobs.get(job_id)) == sorted(sent[k][1] for k in stored if sent[k][0] == job_id)
        for job_id in random.Random(1).sample(sorted({sent[k][0] for k in acked}), 25):
            record = httpx.get(f"{proc.url}/jobs/{job_id}", headers=AUTH, timeout=10)
            assert record.status_code == 200 and record.json()["status"] in ("in_progress", "failed")

        # OpenRouter redelivers what it never got a 2xx for; resending everything is the worst case.
        again, refused, unanswered = asyncio.run(_burst(url, deliveries, None, lambda: None))
        assert refused == [] and unanswered == 0
        assert all(again[key] == "duplicate" for key in acked)
        assert all(again[key] == "duplicate" for key in stored)
        # The deliveries first stored just now are applied in the background: wait for that, not time.
        wait_applied(settings, timeout=30)
        stored, jobs = stored_after(settings, [])
        assert len(stored) == len(deliveries)
        statuses = with_stores(settings, lambda stores: stores.jobs.counts_by_status())
        assert {status: n for status, n in statuses.items() if n} == {"failed": 1000}
    finally:
        proc.stop()


# -- 2. the disk fills up --------------------------------------------------------------------------

_IN_NAMESPACE = "OPENROUTER_VIDEO_TEST_IN_USERNS"


@contextlib.contextmanager
def small_filesystem(path: str, size: str):
    """A tmpfs of `size` at `path`, unmounted afterwards. Needs root (real, or in a user namespace)."""
    os.makedirs(path, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "openrouter-video-test", path],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


def fill(path: str) -> int:
    """Write to `path` until the filesystem is full; return the bytes written."""
    written = 0
    block = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096):
            while True:
                try:
                    n = os.write(fd, block * (size // 4096))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < size:
                    break
    finally:
        os.close(fd)
    return written


def test_full_disk_answers_503_keeps_nothing_half_written_and_recovers_by_itself(
    tmp_path, simulator, api
) -> None:
    if os.geteuid() != 0 and not os.environ.get(_IN_NAMESPACE):
        _rerun_in_user_namespace(
            "test_full_disk_answers_503_keeps_nothing_half_written_and_recovers_by_itself"
        )
        return
    mount = str(tmp_path / "small")
    with small_filesystem(mount, "12m"):  # room, once freed, for the video and a WAL grown while full
        settings = receiver_settings(
            os.path.join(mount, "data"), simulator, download_max_attempts=100_000, min_free_bytes=64 * 1024
        )
        # The simulator redelivers refused webhooks with backoff, like OpenRouter is expected to.
        simulator.config.webhook_attempts = 10
        simulator.config.webhook_backoff = 0.1
        with running_receiver(settings) as rx:
            # Ready before the disk fills (on a loaded machine the first write check can take a while)
            wait_until(
                lambda: httpx.get(f"{rx.url}/readyz", timeout=30).status_code == 200,
                timeout=30,
                what="the receiver to be ready",
            )
            reserve, filler = os.path.join(mount, "reserve"), os.path.join(mount, "filler")
            with open(reserve, "wb") as fh:
                fh.write(b"\0" * (1536 * 1024))
            fill(filler)

            # Phase 1: full. Every delivery gets 503 and leaves nothing behind.
            ready = httpx.get(f"{rx.url}/readyz")
            assert ready.status_code == 503 and "disk space low" in ready.text
            size = 3_000_000
            job = api.submit(
                f"[sim:bytes={size}] too big for the disk",
                model="google/veo-3.1",
                duration=4,
                callback_url=rx.webhook_url,
            )
            wait_until(
                lambda: any(a["status"] == 503 for a in sim_deliveries(simulator, job.id)),
                timeout=20,
                what="the simulator's webhook to be refused",
            )
            # Each delivery is larger than the one before: a failed commit leaves its partly written WAL
            # frames allocated, and a smaller transaction could then fit in them (and rightly get a 200).
            refused = []
            for i in range(10):
                data = {"id": f"jobFull{i}", "status": "failed", "error": "e" * (8192 * (i + 1))}
                body, headers = signed_event(simulator.secret, data)
                response = httpx.post(rx.webhook_url, content=body, headers=headers, timeout=30)
                assert response.status_code == 503, (i, response.status_code, response.text)
                refused.append((headers[IDEMPOTENCY_HEADER], body, headers))
            assert metric(rx, 'receiver_deliveries_total{outcome="store_unavailable"}') >= len(refused)
            # The simulator's small redeliveries of the video's webhook may squeeze into such frames: a
            # 200 for it is then true (it is on disk). Either way, only what was acknowledged is stored.
            acknowledged = 200 in [a["status"] for a in sim_deliveries(simulator, job.id)]
            assert {d["idempotency_key"] for d in rx.deliveries()} <= {f"{job.id}-completed"}
            assert {j["id"] for j in rx.get("/jobs").json()["jobs"]} <= {job.id}
            if acknowledged:  # stored before the 200; the job appears once the applier has run
                wait_until(lambda: rx.job(job.id) is not None, timeout=20, what="the acknowledged job")
            assert all(rx.job(f"jobFull{i}") is None for i in range(len(refused)))

            # Phase 2: some room, but not enough for the video. The redelivered webhook is stored;
            # the download fails over and over, and no partial file is ever served or marked done.
            os.unlink(reserve)
            record = rx.wait_job(job.id, lambda j: bool(j["outputs"]), timeout=60)
            assert record["status"] == "completed"
            final = os.path.join(settings.videos_dir, job.id, "0.mp4")
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                record = rx.job(job.id)
                assert record["outputs"][0]["state"] in ("pending", "downloading"), record["outputs"]
                assert rx.get(f"/jobs/{job.id}/content").status_code == 404
                assert not os.path.exists(final)
                time.sleep(0.1)  # a 3 s window of observation is the thing under test
            # Waiting for room is the receiver's problem: it says so, and uses up none of the attempts.
            # Between two waits the output is claimed again (`downloading`, the attempt counted until
            # the wait gives it back): read it while it waits.
            waiting = rx.wait_job(
                job.id,
                lambda j: (
                    j["outputs"][0]["state"] == "pending"
                    and "waiting for disk space" in (j["outputs"][0]["error"] or "")
                ),
                timeout=20,
            )
            assert waiting["outputs"][0]["attempts"] == 0

            # Phase 3: space is back. Nothing to do by hand: everything catches up.
            os.unlink(filler)
            record = rx.wait_downloaded(job.id, timeout=60)
            output = record["outputs"][0]
            assert output["bytes"] == size and output["sha256"] == sim_sha256(simulator, job.id)
            content = rx.get(f"/jobs/{job.id}/content")
            assert (
                content.status_code == 200 and hashlib.sha256(content.content).hexdigest() == output["sha256"]
            )
            assert [f for _d, _s, fs in os.walk(settings.videos_dir) for f in fs] == ["0.mp4"]
            for key, body, headers in refused:  # the redeliveries of what got 503
                response = httpx.post(rx.webhook_url, content=body, headers=headers, timeout=30)
                assert response.status_code == 200 and response.json()["outcome"] == "accepted", key
            body, headers = signed_event(simulator.secret, {"id": "jobAfterFull", "status": "cancelled"})
            assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
            stored = {d["idempotency_key"] for d in rx.deliveries()}
            assert stored == {k for k, _b, _h in refused} | {f"{job.id}-completed", "jobAfterFull-cancelled"}
            assert all(rx.job(f"jobFull{i}")["status"] == "failed" for i in range(len(refused)))
            assert httpx.get(f"{rx.url}/readyz").status_code == 200
            statuses = [a["status"] for a in sim_deliveries(simulator, job.id)]
            assert 503 in statuses and statuses[-1] == 200


def _rerun_in_user_namespace(name: str) -> None:
    """Not root: run this one test again as root of a new user and mount namespace (no privilege needed)."""
    command = [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"{__file__}::{name}",
    ]
    try:
        probe = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True
        )
    except FileNotFoundError:
        pytest.skip("not root and no unshare(1): cannot make a size-limited filesystem")
    if probe.returncode != 0:
        pytest.skip(f"not root and user namespaces are unavailable: {probe.stderr.decode().strip()}")
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, _IN_NAMESPACE: "1"},
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    if not re.search(r"\b1 passed", result.stdout):
        pytest.skip(f"skipped inside the user namespace: {result.stdout[-500:]}")


# -- 3. upstream trouble ----------------------------------------------------------------------------


def test_fallback_polls_and_downloads_through_429_and_5xx(tmp_path, simulator, api) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, fallback_after=0.3)
    with running_receiver(settings) as rx:
        job = api.submit("[sim:webhook=drop] flaky upstream", model="google/veo-3.1", duration=4)
        faults = {
            "poll_errors": [
                {"status": 429, "count": 2, "retry_after": 0.3},
                {"status": 503, "count": 2},
                {"status": 500, "count": 1},
            ],
            # 7 content errors: more than the client's own retries over both sources (signed URL,
            # then the keyed content URL) absorb, so the fetcher's queue has to retry too.
            "content_errors": [
                {"status": 429, "count": 1, "retry_after": 0.3},
                {"status": 502, "count": 3},
                {"status": 503, "count": 3},
            ],
        }
        assert httpx.post(f"{simulator.admin_url}/faults", json=faults).status_code == 200
        assert rx.post("/jobs", json={"id": job.id, "model": "google/veo-3.1"}).status_code == 201
        record = rx.wait_downloaded(job.id, timeout=60)
        assert record["source"] == "poll" and record["status"] == "completed"
        assert record["outputs"][0]["sha256"] == sim_sha256(simulator, job.id)
        left = httpx.get(f"{simulator.admin_url}/faults").json()
        assert left["poll_errors"] == [] and left["content_errors"] == []  # every injected error was met
        stats = sim_stats(simulator)
        assert stats["polls"] >= 6 and stats["content"] >= 8
        assert metric(rx, 'receiver_fallback_polls_total{result="error"}') >= 1
        assert metric(rx, 'receiver_downloads_total{result="retry"}') >= 1
        assert [e["kind"] for e in record["events"]].count("downloaded") == 1


def test_slow_content_is_never_served_half_written(tmp_path, simulator, api, backend) -> None:
    settings = backend.settings(str(tmp_path / "data"), simulator)
    # Two 8 MiB parts and more: S3 holds the partial video as a multipart upload only once the first
    # part is full (a smaller video is sent in one PutObject at the end), so the upload is there for
    # the second half of these 4+ s, as the folder's .part file is there throughout.
    size = 17_000_000
    with running_receiver(settings) as rx:
        job = api.submit(
            f"[sim:bytes={size}, rate=4000000] slow",
            model="google/veo-3.1",
            duration=4,
            callback_url=rx.webhook_url,
        )
        expected = sim_sha256(simulator, job.id)
        rx.wait_job(job.id, lambda j: j["outputs"] and j["outputs"][0]["state"] == "downloading", timeout=20)
        refused_while_downloading = seen_part = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = rx.job(job.id)["outputs"][0]["state"]
            seen_part |= f"{job.id}/0.mp4" in backend.partials(settings)  # a .part file, an upload
            content = rx.get(f"/jobs/{job.id}/content")
            if content.status_code == 200:  # only ever the whole file
                assert (
                    len(content.content) == size and hashlib.sha256(content.content).hexdigest() == expected
                )
            else:
                assert content.status_code == 404
                refused_while_downloading |= state == "downloading"
            if state == "done":
                break
            time.sleep(0.05)
        assert refused_while_downloading and seen_part
        record = rx.wait_downloaded(job.id, timeout=30)
        assert record["outputs"][0]["bytes"] == size and record["outputs"][0]["sha256"] == expected
        assert len(rx.get(f"/jobs/{job.id}/content").content) == size


def test_webhook_copies_delivered_concurrently_and_late_are_applied_once(
    tmp_path, simulator, api, backend
) -> None:
    settings = backend.settings(str(tmp_path / "data"), simulator)
    with running_receiver(settings) as rx:
        job = api.submit(
            "[sim:copies=25, delay=0.4] popular",
            model="google/veo-3.1",
            duration=4,
            callback_url=rx.webhook_url,
        )
        record = rx.wait_downloaded(job.id)
        wait_until(lambda: len(sim_deliveries(simulator, job.id)) == 25, timeout=20, what="25 copies")
        assert {a["status"] for a in sim_deliveries(simulator, job.id)} == {200}
        wait_applied(settings)  # every copy is answered: the one stored is applied before we look
        assert rx.delivery_count() == 1
        assert [e["kind"] for e in rx.job(job.id)["events"]] == ["status", "downloaded"]
        assert sim_stats(simulator)["content"] == 1
        assert record["outputs"][0]["sha256"] == sim_sha256(simulator, job.id)

        # Late and out-of-order events after the download: non-terminal ones are stale, a completed one
        # under a new key is the same state; none of them moves the job or queues a second download.
        data = {k: v for k, v in job.raw.items() if k in ("id", "model")}
        for status, key in (
            ("in_progress", None),
            ("pending", None),
            ("completed", "redelivered-with-new-key"),
        ):
            extra = (
                {"unsigned_urls": [f"{simulator.api_base}/videos/{job.id}/content?index=0"]}
                if status == "completed"
                else {}
            )
            body, headers = signed_event(simulator.secret, {**data, **extra, "status": status}, key=key)
            assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
        wait_applied(settings)  # the late events are stored, then applied in the background
        after = rx.job(job.id)
        assert after["status"] == "completed" and after["outputs"] == record["outputs"]
        assert [e["kind"] for e in after["events"]] == ["status", "downloaded", "stale", "stale"]
        assert sim_stats(simulator)["content"] == 1
        assert rx.get(f"/jobs/{job.id}/content").status_code == 200


@pytest.mark.parametrize("mode", ["stale", "future"])
def test_webhook_with_a_bad_timestamp_is_refused_and_the_fallback_recovers_the_job(
    tmp_path, simulator, api, mode
) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, fallback_after=0.5)
    with running_receiver(settings) as rx:
        job = api.submit(
            f"[sim:webhook={mode}] skewed clock",
            model="google/veo-3.1",
            duration=4,
            callback_url=rx.webhook_url,
        )
        assert rx.post("/jobs", json={"id": job.id, "model": "google/veo-3.1"}).status_code == 201
        record = rx.wait_downloaded(job.id, timeout=30)
        assert record["source"] == "poll"
        assert record["outputs"][0]["sha256"] == sim_sha256(simulator, job.id)
        wait_until(
            lambda: len(sim_deliveries(simulator, job.id)) == simulator.config.webhook_attempts,
            timeout=20,
            what="every webhook attempt",
        )
        assert {a["status"] for a in sim_deliveries(simulator, job.id)} == {401}
        assert rx.delivery_count() == 0
        reason = {"stale": "too_old", "future": "too_new"}[mode]
        assert (
            metric(rx, f'receiver_verification_failures_total{{reason="{reason}"}}')
            == simulator.config.webhook_attempts
        )


def test_secret_rotation_accepts_both_live_secrets_and_nothing_else(tmp_path, simulator, api) -> None:
    old, new = simulator.secret, "whsec-rotation-new-9d41"
    settings = receiver_settings(
        str(tmp_path / "data"), simulator, webhook_secrets=(Secret(new), Secret(old))
    )  # OPENROUTER_WEBHOOK_SECRET=new,old
    proc = ReceiverProcess(settings).start()
    hook = f"{proc.url}/webhooks/openrouter"

    def downloaded(job_id: str) -> dict:
        return wait_until(
            lambda: (
                lambda r: (
                    r.json()
                    if r.status_code == 200
                    and r.json()["outputs"]
                    and all(o["state"] == "done" for o in r.json()["outputs"])
                    else None
                )
            )(httpx.get(f"{proc.url}/jobs/{job_id}", headers=AUTH)),
            timeout=30,
            what=job_id,
        )

    try:
        before = api.submit(
            "signed with the old secret", model="google/veo-3.1", duration=4, callback_url=hook
        )
        assert downloaded(before.id)["source"] == "webhook"
        simulator.config.webhook_secret = new  # OpenRouter switched to the new secret
        after = api.submit(
            "signed with the new secret", model="google/veo-3.1", duration=4, callback_url=hook
        )
        assert downloaded(after.id)["source"] == "webhook"
        # The simulator logs an attempt after its answer arrives, which can be after the download.
        wait_until(
            lambda: sim_deliveries(simulator, before.id) and sim_deliveries(simulator, after.id),
            what="the simulator's delivery logs",
        )
        assert {
            a["status"] for a in sim_deliveries(simulator, before.id) + sim_deliveries(simulator, after.id)
        } == {200}

        body, headers = signed_event(
            "whsec-third-party", {"id": "jobThird1", "status": "failed", "error": "x"}
        )
        refused = httpx.post(hook, content=body, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["reason"] == "mismatch"
        assert httpx.get(f"{proc.url}/jobs/jobThird1", headers=AUTH).status_code == 404
        t = int(time.time())
        both = f"{sign('whsec-third-party', body, t)},v1={sign(new, body, t).split('v1=')[1]}"
        accepted = httpx.post(hook, content=body, headers={**headers, SIGNATURE_HEADER: both})
        assert accepted.status_code == 200 and accepted.json()["outcome"] == "accepted"
    finally:
        proc.stop()
