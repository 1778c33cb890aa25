"""The receiver end to end: real uvicorn on loopback, the simulator over HTTP, and each storage
backend (tests/backends.py): a real SQLite file and videos folder, then a real PostgreSQL database
and S3 bucket. Every test here runs on both; what it checks goes through the HTTP API, and what it
checks of the stored videos through `backend.objects` / `backend.partials`."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import time

import httpx
import pytest
from receiver_support import (
    AUTH,
    ReceiverProcess,
    running_receiver,
    signed_event,
    wait_until,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support import UvicornThread

from openrouter_video import OpenRouterVideo, sign


@pytest.fixture
def receiver(tmp_path, simulator, backend):
    with running_receiver(backend.settings(str(tmp_path / "data"), simulator)) as rx:
        yield rx


@pytest.fixture
def api(simulator):
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as client:
        yield client


def sim_sha256(simulator, job_id: str, index: int = 0) -> str:
    info = httpx.get(f"{simulator.admin_url}/jobs/{job_id}", timeout=30).json()
    return info["outputs"][index]["sha256"]


def sim_stats(simulator) -> dict:
    return httpx.get(f"{simulator.admin_url}/stats", timeout=10).json()["requests"]


# -- 1-2: size cap and verification ------------------------------------------------------------


@pytest.mark.parametrize("case", ["forged", "stale", "future", "no_signature", "wrong_secret"])
def test_unverifiable_deliveries_are_refused_and_not_stored(receiver, simulator, case) -> None:
    body, headers = signed_event(simulator.secret, {"id": "jobForged1", "status": "completed"})
    now = int(time.time())
    if case == "forged":
        headers["X-OpenRouter-Signature"] = headers["X-OpenRouter-Signature"][:-4] + "0000"
    elif case == "stale":
        headers["X-OpenRouter-Signature"] = sign(simulator.secret, body, now - 330)
    elif case == "future":
        headers["X-OpenRouter-Signature"] = sign(simulator.secret, body, now + 330)
    elif case == "no_signature":
        del headers["X-OpenRouter-Signature"]
    else:
        headers["X-OpenRouter-Signature"] = sign("another-secret", body, now)
    response = httpx.post(receiver.webhook_url, content=body, headers=headers)
    assert response.status_code == 401
    expected = {
        "forged": "mismatch",
        "stale": "too_old",
        "future": "too_new",
        "no_signature": "missing",
        "wrong_secret": "mismatch",
    }[case]
    assert response.json()["error"]["reason"] == expected
    assert receiver.delivery_count() == 0
    assert receiver.job("jobForged1") is None
    metrics = receiver.get("/metrics").text
    assert f'receiver_verification_failures_total{{reason="{expected}"}} 1' in metrics


def test_oversize_body_is_refused_with_and_without_content_length(receiver, simulator) -> None:
    cap = receiver.settings.max_body_bytes
    body, headers = signed_event(
        simulator.secret, {"id": "jobBig1", "status": "failed", "error": "x" * (cap + 10)}
    )
    response = httpx.post(receiver.webhook_url, content=body, headers=headers)
    assert response.status_code == 413

    def chunks():  # no Content-Length: chunked transfer encoding, counted as it arrives
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = httpx.post(receiver.webhook_url, content=chunks(), headers=headers)
    assert response.status_code == 413
    assert receiver.delivery_count() == 0


# -- 3-5: idempotency, durability, state machine --------------------------------------------


def test_signed_webhook_is_recorded_and_its_video_downloaded(receiver, simulator, api) -> None:
    job = api.submit(
        "a lighthouse at dusk", model="google/veo-3.1", duration=4, callback_url=receiver.webhook_url
    )
    record = receiver.wait_downloaded(job.id)
    assert record["status"] == "completed"
    assert record["source"] == "webhook"
    output = record["outputs"][0]
    assert output["sha256"] == sim_sha256(simulator, job.id)
    assert output["url"] == f"/jobs/{job.id}/content?index=0"
    content = receiver.get(output["url"])
    assert content.status_code == 200
    assert content.headers["content-type"] == "video/mp4"
    assert hashlib.sha256(content.content).hexdigest() == output["sha256"]
    ranged = httpx.get(f"{receiver.url}{output['url']}", headers={**AUTH, "Range": "bytes=4-11"})
    assert ranged.status_code == 206
    assert ranged.content == content.content[4:12] and ranged.content == b"ftypisom"[: len(ranged.content)]
    assert record["cost"] is not None and record["cost"] > 0
    assert [e["kind"] for e in record["events"]] == ["status", "downloaded"]


def test_duplicate_storm_gives_one_event_and_one_download(receiver, simulator, api) -> None:
    simulator.config.faults.webhook = "drop"  # we deliver ourselves, many times over
    job = api.wait(api.submit("storm", model="google/veo-3.1", duration=4), first_interval=0.05)
    data = {
        k: v for k, v in job.raw.items() if k in ("id", "generation_id", "model", "unsigned_urls", "usage")
    }
    body, headers = signed_event(simulator.secret, {**data, "status": "completed"})
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(receiver.webhook_url, content=body, headers=headers, timeout=10),
                range(64),
            )
        )
    assert {a.status_code for a in answers} == {200}
    outcomes = [a.json()["outcome"] for a in answers]
    assert outcomes.count("accepted") == 1 and outcomes.count("duplicate") == 63
    record = receiver.wait_downloaded(job.id)
    receiver.applied()  # nothing left to apply (the 63 duplicates were never stored)...
    time.sleep(0.5)  # ...and a window for a second, wrong download to show: the absence is under test
    assert receiver.delivery_count() == 1
    assert [e["kind"] for e in receiver.job(job.id)["events"]] == ["status", "downloaded"]
    assert sim_stats(simulator)["content"] == 1
    assert record["outputs"][0]["sha256"] == sim_sha256(simulator, job.id)


def test_out_of_order_and_conflicting_events_never_move_a_job_back(receiver, simulator) -> None:
    secret = simulator.secret
    job_id = "jobOrder1"
    for status in ("completed", "in_progress", "pending"):
        body, headers = signed_event(secret, {"id": job_id, "status": status, "unsigned_urls": []})
        assert httpx.post(receiver.webhook_url, content=body, headers=headers).status_code == 200
    body, headers = signed_event(secret, {"id": job_id, "status": "failed", "error": "late failure"})
    assert httpx.post(receiver.webhook_url, content=body, headers=headers).status_code == 200
    record = receiver.job(job_id)
    assert record["status"] == "completed"
    kinds = [(e["kind"], e["status"]) for e in record["events"] if e["source"] == "webhook"]
    assert kinds == [
        ("status", "completed"),
        ("stale", "in_progress"),
        ("stale", "pending"),
        ("conflict", "failed"),
    ]
    assert record["error"] is None


def test_failed_job_is_recorded_with_upstream_error_and_nothing_downloaded(receiver, simulator, api) -> None:
    job = api.submit(
        "[sim:outcome=failed] a storm", model="google/veo-3.1", duration=4, callback_url=receiver.webhook_url
    )
    record = receiver.wait_job(job.id, lambda j: j["status"] == "failed")
    assert record["error"] == "Content policy violation"
    assert record["outputs"] == []
    assert sim_stats(simulator)["content"] == 0


def test_verified_non_event_is_kept_unprocessed_and_can_be_reprocessed(receiver, simulator, backend) -> None:
    from click.testing import CliRunner

    from openrouter_video.receiver.cli_local import deliveries, reprocess

    bodies = [
        b"not json at all",
        b'{"type":"video.generation.completed","data":{"id":"../../etc/passwd","status":"completed"}}',
    ]
    for i, body in enumerate(bodies):
        headers = {
            "X-OpenRouter-Signature": sign(simulator.secret, body),
            "X-OpenRouter-Idempotency-Key": f"k{i}",
        }
        response = httpx.post(receiver.webhook_url, content=body, headers=headers)
        assert response.status_code == 200 and response.json()["outcome"] == "accepted"  # stored
    receiver.applied()
    stored = receiver.deliveries()
    assert len(stored) == 2 and all(d["state"] == "failed" for d in stored)
    assert not os.path.exists(os.path.join(receiver.settings.videos_dir, "..", "..", "etc"))
    runner = CliRunner(env=backend.env)  # the CLI opens the receiver's stores, wherever they are
    listing = runner.invoke(deliveries, ["--unprocessed", "--data-dir", receiver.settings.data_dir])
    assert listing.exit_code == 0 and "UNPROCESSED" in listing.output and "not JSON" in listing.output
    result = runner.invoke(reprocess, ["--data-dir", receiver.settings.data_dir])
    assert result.exit_code == 0 and "2 still unprocessed" in result.output


# -- content fetcher -------------------------------------------------------------------------


def test_content_errors_are_retried_honouring_retry_after(receiver, simulator, api) -> None:
    simulator.config.faults.content_errors = []
    httpx.post(
        f"{simulator.admin_url}/faults",
        json={
            "content_errors": [{"status": 503, "count": 2}, {"status": 429, "count": 1, "retry_after": 0.5}]
        },
    )
    job = api.submit("retry me", model="google/veo-3.1", duration=4, callback_url=receiver.webhook_url)
    started = time.monotonic()
    record = receiver.wait_downloaded(job.id, timeout=30)
    assert time.monotonic() - started >= 0.5
    assert record["outputs"][0]["sha256"] == sim_sha256(simulator, job.id)
    assert sim_stats(simulator)["content"] >= 4


def test_gone_output_is_marked_gone_not_retried_forever(receiver, simulator, api) -> None:
    job = api.submit(
        "[sim:gone=true] vanishing", model="google/veo-3.1", duration=4, callback_url=receiver.webhook_url
    )
    record = receiver.wait_job(job.id, lambda j: j["outputs"] and j["outputs"][0]["state"] == "gone")
    assert "410" in record["outputs"][0]["error"]
    assert receiver.get(f"/jobs/{job.id}/content").status_code == 404


def test_api_key_never_reaches_a_host_named_in_a_signed_event(receiver, simulator) -> None:
    seen: list[str | None] = []

    async def record(request: Request) -> Response:
        seen.append(request.headers.get("authorization"))
        return Response(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100, media_type="video/mp4")

    with UvicornThread(Starlette(routes=[Route("/{path:path}", record)])) as other:
        data = {
            "id": "jobForeign1",
            "status": "completed",
            "unsigned_urls": [f"{other.url}/api/v1/videos/jobForeign1/content?index=0"],
        }
        body, headers = signed_event(simulator.secret, data)
        assert httpx.post(receiver.webhook_url, content=body, headers=headers).status_code == 200
        record_ = receiver.wait_job(
            "jobForeign1",
            lambda j: j["outputs"][0]["attempts"] >= 1 and j["outputs"][0]["state"] != "downloading",
        )
    assert all(auth is None for auth in seen)
    # It went to the API origin instead (which does not know this job): never to the other host.
    assert record_["outputs"][0]["state"] in ("gone", "pending", "failed")


# -- polling fallback ------------------------------------------------------------------------


def test_dropped_webhook_is_recovered_by_the_fallback(tmp_path, simulator, api, backend) -> None:
    settings = backend.settings(str(tmp_path / "data"), simulator, fallback_after=0.5)
    with running_receiver(settings) as rx:
        job = api.submit(
            "[sim:webhook=drop] lost in the mail",
            model="google/veo-3.1",
            duration=4,
            callback_url=rx.webhook_url,
        )
        assert (
            rx.post("/jobs", json={"id": job.id, "model": "google/veo-3.1", "prompt": "lost"}).status_code
            == 201
        )
        record = rx.wait_downloaded(job.id, timeout=20)
        assert record["source"] == "poll"
        assert record["prompt"] == "lost"
        assert record["outputs"][0]["sha256"] == sim_sha256(simulator, job.id)
        assert rx.delivery_count() == 0


def test_with_webhooks_flowing_no_job_is_polled(receiver, simulator, api) -> None:
    job = api.submit("on time", model="google/veo-3.1", duration=4, callback_url=receiver.webhook_url)
    assert receiver.post("/jobs", json={"id": job.id, "model": "google/veo-3.1"}).status_code == 201
    before = sim_stats(simulator)["polls"]
    receiver.wait_downloaded(job.id)
    assert sim_stats(simulator)["polls"] == before
    assert "receiver_fallback_polls_total{" not in receiver.get("/metrics").text  # declared, never counted


def test_registration_is_idempotent_before_and_after_the_webhook(receiver, simulator) -> None:
    body, headers = signed_event(simulator.secret, {"id": "jobLate1", "status": "failed", "error": "boom"})
    httpx.post(receiver.webhook_url, content=body, headers=headers)
    first = receiver.post("/jobs", json={"id": "jobLate1", "model": "m1", "prompt": "p"})
    again = receiver.post("/jobs", json={"id": "jobLate1", "model": "m1", "prompt": "p"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["status"] == "failed" and again.json()["prompt"] == "p"
    fresh = receiver.post("/jobs", json={"id": "jobEarly1"})
    assert fresh.status_code == 201 and fresh.json()["status"] == "pending"
    assert receiver.post("/jobs", json={"id": "../x"}).status_code == 400
    assert receiver.post("/jobs", content=b"{").status_code == 400


# -- query API ---------------------------------------------------------------------------------


def test_query_api_requires_the_token(receiver) -> None:
    for path in ("/jobs", "/jobs/x", "/jobs/x/content", "/metrics"):
        assert httpx.get(f"{receiver.url}{path}").status_code == 401
        wrong = httpx.get(
            f"{receiver.url}{path}", headers={"Authorization": "Bearer wrong-token-wrong-token"}
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"].startswith("unauthorized")
    assert httpx.get(f"{receiver.url}/healthz").status_code == 200
    assert httpx.get(f"{receiver.url}/readyz").json()["status"] == "ready"


def test_job_listing_filters_and_paginates(receiver, simulator) -> None:
    for i in range(7):
        status = "failed" if i % 2 else "pending"
        receiver.post("/jobs", json={"id": f"jobList{i}", "model": "m-even" if i % 2 == 0 else "m-odd"})
        if status == "failed":
            body, headers = signed_event(
                simulator.secret, {"id": f"jobList{i}", "status": "failed", "error": "x"}
            )
            httpx.post(receiver.webhook_url, content=body, headers=headers)
    seen, cursor = [], None
    while True:
        page = receiver.get("/jobs", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"jobList{i}" for i in reversed(range(7))]
    failed = receiver.get("/jobs", params={"status": "failed"}).json()["jobs"]
    assert sorted(j["id"] for j in failed) == ["jobList1", "jobList3", "jobList5"]
    assert len(receiver.get("/jobs", params={"model": "m-even"}).json()["jobs"]) == 4
    assert receiver.get("/jobs", params={"since": time.time() + 60}).json()["jobs"] == []
    for bad in (
        {"status": "nope"},
        {"limit": 501},
        {"limit": "x"},
        {"cursor": "garbage"},
        {"since": "yesterday"},
    ):
        response = receiver.get("/jobs", params=bad)
        assert response.status_code == 400 and response.json()["error"]["message"]
    assert receiver.get("/jobs/doesNotExist").status_code == 404
    assert receiver.get("/jobs/jobList0/content").status_code == 404


# -- crash and restart -------------------------------------------------------------------------


def test_sigkill_during_downloads_then_restart_downloads_each_output_exactly_once(
    tmp_path, simulator, api, backend
) -> None:
    size = 24 * 1024 * 1024
    simulator.config.faults.webhook = "drop"
    # A short lease: with PostgreSQL (replicas) the killed worker's claims are free only once their
    # leases run out, and its abandoned uploads are swept a lease later (SQLite knows at once).
    settings = backend.settings(str(tmp_path / "data"), simulator, download_concurrency=3, claim_lease=3.0)
    jobs = [
        api.submit(f"[sim:bytes={size}, rate={16 * 1024 * 1024}] big {i}", model="google/veo-3.1", duration=4)
        for i in range(4)
    ]
    jobs = [api.wait(j, first_interval=0.05) for j in jobs]
    proc = ReceiverProcess(settings).start()
    try:
        for job in jobs:
            data = {k: v for k, v in job.raw.items() if k in ("id", "model", "unsigned_urls", "usage")}
            body, headers = signed_event(simulator.secret, {**data, "status": "completed"})
            assert (
                httpx.post(f"{proc.url}/webhooks/openrouter", content=body, headers=headers).status_code
                == 200
            )

        def partials():  # .part files, or multipart uploads
            return backend.partials(settings)

        wait_until(partials, timeout=10, what="downloads to be under way")
        proc.kill()
        assert partials(), "the kill should leave partial downloads behind"
        assert len(backend.objects(settings)) < len(jobs), "the kill should come mid-download"
        proc = ReceiverProcess(settings, port=proc.port).start()
        for job in jobs:

            def downloaded(job_id: str = job.id) -> dict | None:
                response = httpx.get(f"{proc.url}/jobs/{job_id}", headers=AUTH)
                done = response.status_code == 200 and all(
                    o["state"] == "done" for o in response.json()["outputs"]
                )
                return response.json() if done else None

            record = wait_until(downloaded, timeout=60, what=job.id)
            assert record["outputs"][0]["sha256"] == sim_sha256(simulator, job.id)
            assert record["outputs"][0]["bytes"] == size
            assert [e["kind"] for e in record["events"]].count("downloaded") == 1
        wait_until(lambda: partials() == [], timeout=20, what="the abandoned partial downloads to be swept")
        assert backend.objects(settings) == sorted(f"{j.id}/0.mp4" for j in jobs)
    finally:
        proc.stop()
