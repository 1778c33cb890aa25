"""The query API on each storage backend (tests/backends.py): GET /deliveries (filters, pages, bad
parameters), POST /deliveries/reprocess, and a video's content with Range and HEAD as a client sees
it, whether the bytes come from a file or from an S3 object.

GET /jobs and /jobs/{id} (listing, filters, pages, 404s, the token) are in test_receiver.py, which
runs on both backends too. Real uvicorn on loopback, the simulator over HTTP.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from receiver_support import AUTH, running_receiver, signed_event

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, OpenRouterVideo, sign


@pytest.fixture
def receiver(tmp_path, simulator, backend):
    with running_receiver(backend.settings(str(tmp_path / "data"), simulator)) as rx:
        yield rx


def _deliver(receiver, body: bytes, headers: dict[str, str]) -> None:
    answer = httpx.post(receiver.webhook_url, content=body, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json()["outcome"] == "accepted", answer.text


def test_delivery_listing_filters_paginates_and_reprocesses(receiver, simulator) -> None:
    for n in range(5):
        _deliver(receiver, *signed_event(simulator.secret, {"id": f"jobDel{n}", "status": "in_progress"}))
    for n in range(2):  # verified, but not an event: stored, then failed by the applier
        body = b"not an event %d" % n
        headers = {SIGNATURE_HEADER: sign(simulator.secret, body), IDEMPOTENCY_HEADER: f"junk-{n}"}
        _deliver(receiver, body, headers)
    receiver.applied()

    seen, cursor = [], None
    while True:
        page = receiver.get("/deliveries", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        assert len(page.json()["deliveries"]) <= 2
        seen += page.json()["deliveries"]
        if not (cursor := page.json()["next_cursor"]):
            break
    events = [f"jobDel{n}-in_progress" for n in reversed(range(5))]
    assert [d["idempotency_key"] for d in seen] == ["junk-1", "junk-0", *events]
    assert [d["id"] for d in seen] == sorted((d["id"] for d in seen), reverse=True)  # newest first
    first = seen[-1]
    assert first["job_id"] == "jobDel0" and first["status"] == "in_progress"
    assert first["event_type"] == "video.generation.in_progress" and first["body_bytes"] > 0
    assert first["state"] == "applied" and first["applied_at"] and first["received_at"]
    assert "body" not in first and "headers" not in first  # never the signature

    def keys(state: str) -> list[str]:
        answer = receiver.get("/deliveries", params={"state": state})
        assert answer.status_code == 200, answer.text
        return [d["idempotency_key"] for d in answer.json()["deliveries"]]

    assert keys("applied") == events
    assert keys("failed") == ["junk-1", "junk-0"] == keys("unprocessed")
    assert keys("pending") == []
    for bad in ({"state": "nope"}, {"limit": 0}, {"limit": 501}, {"limit": "x"}, {"cursor": "garbage"}):
        answer = receiver.get("/deliveries", params=bad)
        assert answer.status_code == 400 and answer.json()["error"]["message"], bad
    assert httpx.get(f"{receiver.url}/deliveries").status_code == 401

    # Reprocessing over HTTP: the two are still not events, and say so; the applied ones are untouched.
    result = receiver.post("/deliveries/reprocess")
    assert result.status_code == 200, result.text
    assert (result.json()["applied"], result.json()["unprocessed"]) == (0, 2)
    assert sorted(r["idempotency_key"] for r in result.json()["reprocessed"]) == ["junk-0", "junk-1"]
    assert keys("applied") == events
    assert receiver.post("/deliveries/reprocess", json={"ids": ["x"]}).status_code == 400


def test_content_serves_whole_ranges_head_and_416(receiver, simulator) -> None:
    size = 300_000
    with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
        job = api.submit(
            f"[sim:bytes={size}] ranged",
            model="google/veo-3.1",
            duration=4,
            callback_url=receiver.webhook_url,
        )
    record = receiver.wait_downloaded(job.id)
    url = f"{receiver.url}{record['outputs'][0]['url']}"
    with httpx.Client(headers=AUTH, timeout=30) as http:
        whole = http.get(url)
        assert whole.status_code == 200 and len(whole.content) == size
        assert hashlib.sha256(whole.content).hexdigest() == record["outputs"][0]["sha256"]
        assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-length"] == str(size)
        assert whole.headers["content-disposition"] == f'inline; filename="{job.id}-0.mp4"'
        video = whole.content

        for header, start, stop in (
            ("bytes=0-0", 0, 1),  # the first byte
            ("bytes=1000-1999", 1000, 2000),  # the middle
            (f"bytes={size - 10}-", size - 10, size),  # open-ended
            ("bytes=-100", size - 100, size),  # the last 100
            (f"bytes=5-{size + 1000}", 5, size),  # past the end: cut at the end
        ):
            part = http.get(url, headers={"Range": header})
            assert part.status_code == 206, (header, part.status_code)
            assert part.content == video[start:stop], header
            assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}", header
            assert part.headers["content-length"] == str(stop - start), header

        beyond = http.get(url, headers={"Range": f"bytes={size}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"

        head = http.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(size) and head.headers["accept-ranges"] == "bytes"
        assert http.get(f"{receiver.url}/jobs/{job.id}/content", params={"index": 1}).status_code == 404
    assert httpx.get(url).status_code == 401
