"""The OpenRouter video API simulator, exercised over real HTTP (httpx + uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import av
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support import RunningSimulator, UvicornThread, fast_simulator_config, running_simulator

from openrouter_video._exceptions import WebhookVerificationError
from openrouter_video._simulator import CATALOG, SimulatorConfig
from openrouter_video._simulator._catalog import dimensions
from openrouter_video._simulator._mp4 import free_box_header, iter_content, sample_size
from openrouter_video._simulator._video import SAMPLES_DIR, VideoSpec, retime, video_bytes, video_for
from openrouter_video._webhooks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify, verify_signature

JOB_ID_RE = re.compile(r"^gen-vid-\d{10}-[A-Za-z0-9]{20}$")
VEO = {"model": "google/veo-3.1", "prompt": "a red fox in the snow"}
MiB = 1024 * 1024


# -- helpers -----------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def submit(sim: RunningSimulator, body: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    response = httpx.post(f"{sim.api_base}/videos", json=body or VEO, headers={**sim.headers, **headers})
    assert response.status_code == 202, response.text
    return response.json()


def poll(sim: RunningSimulator, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{sim.api_base}/videos/{job_id}", headers=sim.headers)
    assert response.status_code == 200, response.text
    return response.json()


def wait_status(sim: RunningSimulator, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll until the job is terminal; return the last poll body."""
    last: dict[str, Any] = {}

    def done() -> bool:
        last.update(poll(sim, job_id))
        return last["status"] in ("completed", "failed", "cancelled", "expired")

    assert wait_for(done, timeout), last
    return last


def admin_job(sim: RunningSimulator, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{sim.admin_url}/jobs/{job_id}", timeout=30).json()


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class WebhookRecorder:
    """A receiving app: records every delivery and answers from a scripted list (then 204)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.received.append((dict(request.headers), body))
            self.arrivals.append(time.time())
            status = self.answers.pop(0) if self.answers else 204
        return Response(status_code=status)

    def wait(self, count: int, timeout: float = 5.0) -> list[tuple[dict[str, str], bytes]]:
        wait_for(lambda: len(self.received) >= count, timeout)
        return list(self.received)


@pytest.fixture(scope="module")
def shared_simulator() -> Iterator[RunningSimulator]:
    """One simulator for the many stateless validation cases (saves a server start per case)."""
    with running_simulator() as sim:
        yield sim


@pytest.fixture
def recorder() -> Iterator[tuple[WebhookRecorder, str]]:
    rec = WebhookRecorder()
    with UvicornThread(rec.app) as server:
        yield rec, f"{server.url}/hook"


# -- auth, models, validation ------------------------------------------------------------------


def test_auth_is_required_and_errors_have_openrouter_shape(simulator: RunningSimulator) -> None:
    url = f"{simulator.api_base}/videos/models"
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic abc"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401
        assert response.json()["error"]["message"]
    assert httpx.post(f"{simulator.api_base}/videos", json=VEO).status_code == 401
    assert httpx.get(f"{simulator.api_base}/videos/gen-vid-1-x").status_code == 401
    assert httpx.get(url, headers=simulator.headers).status_code == 200
    assert simulator.state.jobs.all() == []


def test_any_non_empty_key_is_accepted_when_none_configured() -> None:
    with running_simulator(fast_simulator_config(api_key=None)) as sim:
        assert (
            httpx.get(f"{sim.api_base}/videos/models", headers={"Authorization": "Bearer x"}).status_code
            == 200
        )
        assert (
            httpx.get(f"{sim.api_base}/videos/models", headers={"Authorization": "Bearer"}).status_code == 401
        )


def test_unknown_route_answers_json_404(simulator: RunningSimulator) -> None:
    response = httpx.get(f"{simulator.url}/api/v1/nothing", headers=simulator.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404
    missing = httpx.get(f"{simulator.api_base}/videos/gen-vid-1-nope", headers=simulator.headers)
    assert missing.status_code == 404 and "not found" in missing.json()["error"]["message"]


def test_models_list_is_the_catalog(simulator: RunningSimulator) -> None:
    response = httpx.get(f"{simulator.api_base}/videos/models", headers=simulator.headers)
    data = response.json()["data"]
    ids = {m["id"] for m in data}
    assert {
        "google/veo-3.1",
        "google/veo-3.1-fast",
        "google/veo-3.1-lite",
        "openai/sora-2-pro",
        "alibaba/wan-2.6",
        "alibaba/wan-2.7",
        "bytedance/seedance-2.0",
        "kwaivgi/kling-v3.0-pro",
        "minimax/hailuo-2.3",
        "x-ai/grok-imagine-video",
        "black-forest-labs/flux-video-upscale",
    } <= ids
    assert data == CATALOG
    veo = next(m for m in data if m["id"] == "google/veo-3.1")
    assert veo["canonical_slug"] == "google/veo-3.1-20260320"
    assert veo["supported_durations"] == [4, 6, 8]
    assert veo["pricing_skus"]["duration_seconds_with_audio"] == "0.40"
    fields = set(veo)
    for model in data:
        assert set(model) == fields, model["id"]
        assert all(isinstance(v, str) for v in (model["pricing_skus"] or {}).values())
    upscaler = next(m for m in data if m["id"] == "black-forest-labs/flux-video-upscale")
    assert upscaler["supported_durations"] is None and upscaler["upscale_factor"] == {"min": 1.5, "max": 3}


_FRAME = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "x"}, ["model", "required"]),
        ({"model": "openrouter/google/veo-3.1", "prompt": "x"}, ["model", "openrouter/google/veo-3.1", "google/veo-3.1"]),
        ({**VEO, "duration": 5}, ["duration", "5", "4, 6, 8"]),
        ({**VEO, "duration": "4"}, ["duration", "integer"]),
        ({**VEO, "resolution": "480p"}, ["resolution", "480p", "720p, 1080p, 4K"]),
        ({**VEO, "aspect_ratio": "1:1"}, ["aspect_ratio", "1:1", "16:9, 9:16"]),
        ({**VEO, "size": "640x480"}, ["size", "640x480", "1280x720"]),
        ({**VEO, "size": "big"}, ["size", "WIDTHxHEIGHT"]),
        ({**VEO, "frame_images": [{**_FRAME, "frame_type": "middle_frame"}]}, ["frame_type", "middle_frame", "first_frame"]),
        ({**VEO, "frame_images": [{**_FRAME, "frame_type": "first_frame"}] * 2}, ["more than one first_frame"]),
        ({"model": "alibaba/wan-2.6", "prompt": "x", "frame_images": [{**_FRAME, "frame_type": "last_frame"}]},
         ["last_frame", "alibaba/wan-2.6", "first_frame"]),
        ({"model": "openai/sora-2-pro", "prompt": "x", "seed": 42}, ["seed", "openai/sora-2-pro"]),
        ({"model": "minimax/hailuo-2.3", "prompt": "x", "generate_audio": True}, ["generate_audio", "minimax/hailuo-2.3"]),
        ({**VEO, "provider": {"options": {"google-vertex": {"parameters": {"fps": 30}}}}},
         ["provider.options.google-vertex.parameters.fps", "negativePrompt"]),
        ({**VEO, "provider": {"options": {"google-vertex": {"output_config": {}}}}}, ["output_config", "personGeneration"]),
        ({**VEO, "callback_url": "ftp://example.com/hook"}, ["callback_url", "http"]),
        ({**VEO, "upscale_factor": 2}, ["upscale_factor", "google/veo-3.1"]),
        ({"model": "google/veo-3.1"}, ["prompt", "required"]),
    ],
)  # fmt: skip
def test_submit_validation_names_field_value_and_allowed(
    shared_simulator: RunningSimulator, body: dict[str, Any], expected: list[str]
) -> None:
    simulator = shared_simulator
    jobs_before = len(simulator.state.jobs)
    response = httpx.post(f"{simulator.api_base}/videos", json=body, headers=simulator.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400
    for part in expected:
        assert part in error["message"], (part, error["message"])
    assert len(simulator.state.jobs) == jobs_before


def test_submit_rejects_non_json_and_non_object(simulator: RunningSimulator) -> None:
    url = f"{simulator.api_base}/videos"
    bad = httpx.post(
        url, content=b"{not json", headers={**simulator.headers, "Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    assert httpx.post(url, json=[VEO], headers=simulator.headers).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {**VEO, "duration": 8, "resolution": "4K", "aspect_ratio": "9:16", "seed": 7, "generate_audio": False},
        {**VEO, "size": "1080x1920", "callback_url": "http://127.0.0.1:9/hook"},
        {**VEO, "provider": {"options": {"google-vertex": {"parameters": {"negativePrompt": "blur"}}}}},
        {**VEO, "frame_images": [{**_FRAME, "frame_type": "first_frame"}, {**_FRAME, "frame_type": "last_frame"}]},
        {"model": "google/veo-3.1", "frame_images": [{**_FRAME, "frame_type": "first_frame"}]},
        {"model": "runway/aleph-2", "prompt": "x", "duration": 37, "resolution": "720p"},  # null lists: unchecked
        {"model": "openai/sora-2-pro", "prompt": "x", "frame_images": [{**_FRAME, "frame_type": "last_frame"}]},
        {"model": "black-forest-labs/flux-video-upscale", "upscale_factor": 2, "creativity": 1,
         "input_references": [{"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}}]},
    ],
)  # fmt: skip
def test_submit_accepts_valid_requests(shared_simulator: RunningSimulator, body: dict[str, Any]) -> None:
    job = submit(shared_simulator, body)
    assert set(job) == {"id", "polling_url", "status"}


# -- lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_pending_in_progress_completed(simulator: RunningSimulator) -> None:
    # Windows wide enough to observe each status even on a loaded machine.
    created = submit(
        simulator, {**VEO, "duration": 8}, **{"X-Simulator-Pending": "0.3", "X-Simulator-In-Progress": "0.3"}
    )
    job_id = created["id"]
    assert JOB_ID_RE.match(job_id)
    assert created == {
        "id": job_id,
        "polling_url": f"{simulator.api_base}/videos/{job_id}",
        "status": "pending",
    }
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen.append(poll(simulator, job_id))
        if seen[-1]["status"] == "completed":
            break
        time.sleep(0.01)
    statuses = [body["status"] for body in seen]
    order = list(dict.fromkeys(statuses))
    assert order == ["pending", "in_progress", "completed"], statuses
    pending = seen[0]
    assert set(pending) == {"id", "polling_url", "status", "model"}
    in_progress = next(b for b in seen if b["status"] == "in_progress")
    assert set(in_progress) == {"id", "polling_url", "status", "generation_id", "model"}
    assert in_progress["generation_id"].startswith("gen-")
    done = seen[-1]
    assert set(done) == {
        "id", "polling_url", "status", "generation_id", "model", "unsigned_urls", "urls", "expires_at", "usage",
    }  # fmt: skip
    assert done["generation_id"] == in_progress["generation_id"]
    assert done["model"] == "google/veo-3.1"
    assert done["unsigned_urls"] == [f"{simulator.api_base}/videos/{job_id}/content?index=0"]
    assert done["urls"][0].startswith(f"{simulator.url}/storage/{job_id}/0.mp4?expires=")
    internal = admin_job(simulator, job_id)
    assert done["expires_at"] == int(internal["finished_at"] + 3600)
    assert abs(done["expires_at"] - (time.time() + 3600)) < 5
    # veo-3.1, 8 s, audio on by default (model flag), 720p default tier: duration_seconds_with_audio 0.40/s.
    assert done["usage"] == {"cost": pytest.approx(3.2), "is_byok": False}


def test_cost_follows_audio_and_resolution_skus(simulator: RunningSimulator) -> None:
    quiet_4k = submit(simulator, {**VEO, "duration": 4, "resolution": "4K", "generate_audio": False})["id"]
    kling = submit(simulator, {"model": "kwaivgi/kling-v3.0-pro", "prompt": "x", "duration": 5})["id"]
    upscale = submit(
        simulator,
        {"model": "black-forest-labs/flux-video-upscale", "upscale_factor": 2,
         "input_references": [{"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}}]},
    )["id"]  # fmt: skip
    assert wait_status(simulator, quiet_4k)["usage"]["cost"] == pytest.approx(4 * 0.40)
    assert wait_status(simulator, kling)["usage"]["cost"] == pytest.approx(5 * 0.168)
    assert wait_status(simulator, upscale)["usage"] == {"cost": None, "is_byok": False}


@pytest.mark.parametrize(
    ("outcome", "how", "error"),
    [
        ("failed", "marker", "Content policy violation"),
        ("cancelled", "header", "Job was cancelled"),
        ("expired", "global", "Job exceeded maximum time to live"),
    ],
)
def test_unsuccessful_outcomes(simulator: RunningSimulator, outcome: str, how: str, error: str) -> None:
    body, headers = dict(VEO), {}
    if how == "marker":
        body["prompt"] = f"a fox [sim:outcome={outcome}]"
    elif how == "header":
        headers["X-Simulator-Outcome"] = outcome
    else:
        simulator.config.faults.outcome = outcome
    job_id = submit(simulator, body, **headers)["id"]
    final = wait_status(simulator, job_id)
    assert final["status"] == outcome
    assert final["error"] == error
    assert final["generation_id"] and final["model"] == "google/veo-3.1"
    assert not {"unsigned_urls", "urls", "expires_at", "usage"} & set(final)
    content = httpx.get(f"{simulator.api_base}/videos/{job_id}/content", headers=simulator.headers)
    assert content.status_code == 409


def test_per_job_timing_overrides(simulator: RunningSimulator) -> None:
    simulator.config.pending_seconds = 30
    slow = submit(simulator)["id"]
    fast = submit(simulator, {**VEO, "prompt": "x [sim:pending=0, in_progress=0.05]"})["id"]
    header = submit(simulator, None, **{"X-Simulator-Pending": "0", "X-Simulator-In-Progress": "0"})["id"]
    assert poll(simulator, header)["status"] == "completed"
    assert wait_status(simulator, fast, timeout=2)["status"] == "completed"
    assert poll(simulator, slow)["status"] == "pending"


def test_bad_knob_is_a_400(simulator: RunningSimulator) -> None:
    for body, headers in [
        ({**VEO, "prompt": "x [sim:outcome=exploded]"}, {}),
        ({**VEO, "prompt": "x [sim:colour=red]"}, {}),
        (VEO, {"X-Simulator-Copies": "many"}),
        (VEO, {"X-Simulator-Bytes": str(sample_size() + 3)}),
    ]:
        response = httpx.post(
            f"{simulator.api_base}/videos", json=body, headers={**simulator.headers, **headers}
        )
        assert response.status_code == 400
        assert "simulator" in response.json()["error"]["message"]


def test_relative_polling_url_style(simulator: RunningSimulator) -> None:
    simulator.config.polling_url_style = "relative"
    created = submit(simulator)
    assert created["polling_url"] == f"/api/v1/videos/{created['id']}"
    assert poll(simulator, created["id"])["polling_url"] == created["polling_url"]
    resolved = httpx.get(simulator.url + created["polling_url"], headers=simulator.headers)
    assert resolved.status_code == 200 and resolved.json()["id"] == created["id"]


# -- content -----------------------------------------------------------------------------------


def test_content_is_a_decodable_mp4_of_the_requested_size(simulator: RunningSimulator) -> None:
    size = 3 * MiB + 17
    job_id = submit(simulator, None, **{"X-Simulator-Bytes": str(size)})["id"]
    done = wait_status(simulator, job_id)
    response = httpx.get(done["unsigned_urls"][0], headers=simulator.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == size == len(response.content)
    data = response.content
    assert hashlib.sha256(data).hexdigest() == admin_job(simulator, job_id)["outputs"][0]["sha256"]
    # Top-level boxes: moov before mdat (faststart), then the padding `free` box reaching the end.
    boxes, offset = [], 0
    while offset < len(data):
        box_size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append(kind.decode())
        offset += box_size
    assert offset == size
    assert boxes.index("moov") < boxes.index("mdat") and boxes[-1] == "free"
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (1280, 720)  # Veo 3.1's defaults: 720p 16:9, 4 s
    again = httpx.get(done["unsigned_urls"][0], headers=simulator.headers).content
    assert again == data
    other = submit(simulator, None, **{"X-Simulator-Bytes": str(size)})["id"]
    wait_status(simulator, other)
    other_data = httpx.get(f"{simulator.api_base}/videos/{other}/content", headers=simulator.headers).content
    assert len(other_data) == size and other_data != data


def decoded(data: bytes) -> tuple[float, int, int, int, float]:
    """(duration s, width, height, frames decoded, time of the last frame) of an MP4."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert container.duration is not None and stream.time_base is not None
        last = float(frames[-1].pts * stream.time_base)
        return container.duration / 1e6, frames[0].width, frames[0].height, len(frames), last


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"model": "google/veo-3.1", "resolution": "720p", "aspect_ratio": "16:9", "duration": 4},
            (1280, 720, 4),
        ),
        (
            {"model": "google/veo-3.1", "resolution": "1080p", "aspect_ratio": "9:16", "duration": 8},
            (1080, 1920, 8),
        ),
        ({"model": "openai/sora-2-pro", "size": "1792x1024", "duration": 12}, (1792, 1024, 12)),
        (
            {"model": "bytedance/seedance-2.0", "resolution": "480p", "aspect_ratio": "1:1", "duration": 15},
            (480, 480, 15),
        ),
        ({"model": "google/veo-3.1-lite"}, (1280, 720, 8)),  # the model's first listed values
        ({"model": "minimax/hailuo-3", "aspect_ratio": "21:9", "duration": 5}, (3360, 1440, 5)),
    ],
)
def test_the_video_has_the_requested_duration_and_frame_size(
    simulator: RunningSimulator, body: dict[str, Any], expected: tuple[int, int, int]
) -> None:
    job_id = submit(simulator, {**body, "prompt": "a fox [sim:bytes=300000]"})["id"]
    done = wait_status(simulator, job_id)
    url = done["unsigned_urls"][0]
    data = httpx.get(url, headers=simulator.headers).content
    width, height, seconds = expected
    duration, w, h, frames, last = decoded(data)
    assert (w, h) == (width, height) and duration == seconds
    assert frames == 12 and last == pytest.approx(seconds * 11 / 12)  # evenly over the whole length
    record = admin_job(simulator, job_id)
    assert record["video"] == {"width": width, "height": height, "seconds": seconds}
    assert len(data) == 300000 and hashlib.sha256(data).hexdigest() == record["outputs"][0]["sha256"]
    etag = httpx.head(url, headers=simulator.headers).headers["etag"]
    part = httpx.get(url, headers={**simulator.headers, "Range": "bytes=100-2999", "If-Range": etag})
    assert part.status_code == 206 and part.content == data[100:3000]
    assert httpx.get(url, headers=simulator.headers).content == data


def test_every_frame_size_the_catalog_allows_has_its_own_sample_and_they_stay_small() -> None:
    for model in CATALOG:
        for tier in model["supported_resolutions"] or []:
            for ratio in model["supported_aspect_ratios"] or []:
                spec = video_for(model, resolution=tier, aspect_ratio=ratio)
                assert (spec.width, spec.height) == dimensions(tier, ratio)
        for size in model["supported_sizes"] or []:
            spec = video_for(model, size=size)
            assert f"{spec.width}x{spec.height}" == size
    assert sum(p.stat().st_size for p in SAMPLES_DIR.glob("*.mp4")) < 300_000
    # A size no sample has (a null catalog list let it through) gets the nearest in shape.
    assert video_for({"id": "x"}, size="1000x1000", duration=3) == VideoSpec(1080, 1080, 3)


def test_retiming_is_exact_and_refuses_what_it_cannot_do() -> None:
    one = video_bytes(VideoSpec(640, 480, 1))
    assert decoded(one)[:4] == (1.0, 640, 480, 12)
    assert decoded(retime(one, 20))[:4] == (20.0, 640, 480, 12)
    assert len(retime(one, 20)) == len(one)  # only header fields change
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            retime(one, bad)  # type: ignore[arg-type]


def test_bytes_too_small_for_the_requested_video_is_a_400(simulator: RunningSimulator) -> None:
    big = {"model": "google/veo-3.1", "resolution": "4K", "aspect_ratio": "16:9", "duration": 4}
    small = sample_size(VideoSpec(3840, 2160, 4)) + 3
    response = httpx.post(
        f"{simulator.api_base}/videos",
        json={**big, "prompt": f"x [sim:bytes={small}]"},
        headers=simulator.headers,
    )
    assert response.status_code == 400 and "bytes" in response.json()["error"]["message"]


def test_multiple_outputs_and_index_errors(simulator: RunningSimulator) -> None:
    job_id = submit(simulator, {**VEO, "prompt": "x [sim:outputs=2, bytes=65536, pending=0.5]"})["id"]
    url = f"{simulator.api_base}/videos/{job_id}/content"
    early = httpx.get(url, headers=simulator.headers)
    assert early.status_code == 409 and "not ready" in early.json()["error"]["message"]
    done = wait_status(simulator, job_id)
    assert len(done["unsigned_urls"]) == len(done["urls"]) == 2
    first = httpx.get(url, headers=simulator.headers).content
    second = httpx.get(url, params={"index": 1}, headers=simulator.headers).content
    assert len(first) == len(second) == 65536 and first != second
    hashes = [o["sha256"] for o in admin_job(simulator, job_id)["outputs"]]
    assert hashes == [hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()]
    for index in ("2", "-1", "abc"):
        bad = httpx.get(url, params={"index": index}, headers=simulator.headers)
        assert bad.status_code == 400 and "index" in bad.json()["error"]["message"]
    assert (
        httpx.get(
            f"{simulator.api_base}/videos/gen-vid-0-none/content", headers=simulator.headers
        ).status_code
        == 404
    )
    assert httpx.get(url).status_code == 401


def test_range_requests(simulator: RunningSimulator) -> None:
    job_id = submit(simulator, None, **{"X-Simulator-Bytes": "200000"})["id"]
    done = wait_status(simulator, job_id)
    url, auth = done["unsigned_urls"][0], simulator.headers
    full = httpx.get(url, headers=auth).content
    part = httpx.get(url, headers={**auth, "Range": "bytes=1000-199999"})
    assert part.status_code == 206
    assert part.headers["content-range"] == "bytes 1000-199999/200000"
    assert part.content == full[1000:]
    tail = httpx.get(url, headers={**auth, "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == full[-10:]
    assert httpx.get(url, headers={**auth, "Range": "bytes=200000-"}).status_code == 416
    stale = httpx.get(url, headers={**auth, "Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == full
    head = httpx.head(url, headers=auth)
    assert head.status_code == 200 and head.headers["content-length"] == "200000" and head.content == b""


def test_gone_answers_410_live(simulator: RunningSimulator) -> None:
    job_id = submit(simulator)["id"]
    done = wait_status(simulator, job_id)
    assert httpx.get(done["unsigned_urls"][0], headers=simulator.headers).status_code == 200
    httpx.post(f"{simulator.admin_url}/faults", json={"gone": True}).raise_for_status()
    assert httpx.get(done["unsigned_urls"][0], headers=simulator.headers).status_code == 410
    assert httpx.get(done["urls"][0]).status_code == 410
    httpx.delete(f"{simulator.admin_url}/faults").raise_for_status()
    httpx.post(f"{simulator.admin_url}/jobs/{job_id}", json={"gone": True}).raise_for_status()
    assert httpx.get(done["unsigned_urls"][0], headers=simulator.headers).status_code == 410


def test_large_content_streams_with_flat_memory(simulator: RunningSimulator) -> None:
    size = 300 * MiB
    job_id = submit(simulator, {**VEO, "prompt": f"big [sim:bytes={size}, pending=0, in_progress=0]"})["id"]
    baseline = peak = rss_bytes()
    received, started = 0, time.monotonic()
    with httpx.stream(
        "GET", f"{simulator.api_base}/videos/{job_id}/content", headers=simulator.headers
    ) as response:
        assert int(response.headers["content-length"]) == size
        for i, piece in enumerate(response.iter_raw(MiB)):
            received += len(piece)
            if i % 16 == 0:
                peak = max(peak, rss_bytes())
    assert received == size
    assert peak - baseline < 64 * MiB, f"RSS grew by {(peak - baseline) / MiB:.0f} MiB"
    assert time.monotonic() - started < 10


def test_content_rate_throttles(simulator: RunningSimulator) -> None:
    job_id = submit(
        simulator, {**VEO, "prompt": "x [sim:bytes=120000, rate=300000, pending=0, in_progress=0]"}
    )["id"]
    started = time.monotonic()
    data = httpx.get(f"{simulator.api_base}/videos/{job_id}/content", headers=simulator.headers).content
    assert len(data) == 120000
    assert time.monotonic() - started >= 0.3


@settings(max_examples=60, deadline=None)
@given(
    extra=st.integers(min_value=0, max_value=300_000),
    bounds=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    chunk=st.integers(min_value=1, max_value=200_000),
)
def test_any_byte_range_equals_the_slice_of_the_whole(
    extra: int, bounds: tuple[float, float], chunk: int
) -> None:
    size = sample_size() + (0 if extra < 8 else extra)
    whole = b"".join(iter_content("gen-vid-1-prop", 0, size))
    assert len(whole) == size
    start, stop = sorted(int(b * size) for b in bounds)
    pieces = list(iter_content("gen-vid-1-prop", 0, size, start, stop, chunk=chunk))
    assert all(len(p) <= chunk for p in pieces)
    assert b"".join(pieces) == whole[start:stop]


def test_mp4_padding_uses_largesize_past_4gib() -> None:
    base = sample_size()
    assert free_box_header(100) == struct.pack(">I4s", 100, b"free")
    size = 5 * 1024**3
    head = b"".join(iter_content("job", 0, size, 0, base + 16))
    assert struct.unpack(">I4sQ", head[base:]) == (1, b"free", size - base)
    tail = b"".join(iter_content("job", 0, size, size - 100))
    assert len(tail) == 100


# -- signed URLs -------------------------------------------------------------------------------


def test_signed_url_needs_no_key_and_resists_tampering(simulator: RunningSimulator) -> None:
    job_id = submit(simulator)["id"]
    done = wait_status(simulator, job_id)
    signed = done["urls"][0]
    direct = httpx.get(signed)
    assert direct.status_code == 200
    assert direct.content == httpx.get(done["unsigned_urls"][0], headers=simulator.headers).content
    expires = done["expires_at"]
    for bad in (
        signed[:-4] + ("0000" if not signed.endswith("0000") else "1111"),
        signed.replace(f"expires={expires}", f"expires={expires + 1}"),
        signed.replace(f"/{job_id}/0.mp4", f"/{job_id}/1.mp4"),
        signed.split("?")[0],
    ):
        response = httpx.get(bad)
        assert response.status_code == 403, bad
        assert response.json()["error"]["code"] == 403
    past = int(time.time()) - 1
    expired = simulator.url + simulator.state.signer.path(job_id, 0, past)
    response = httpx.get(expired)
    assert response.status_code == 403 and "expired" in response.json()["error"]["message"]


# -- webhooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_webhook_is_signed_and_verifies(
    simulator: RunningSimulator, recorder: tuple[WebhookRecorder, str], outcome: str
) -> None:
    rec, hook = recorder
    job_id = submit(simulator, {**VEO, "callback_url": hook}, **{"X-Simulator-Outcome": outcome})["id"]
    [(headers, body)] = rec.wait(1)
    event = verify(simulator.secret, body, headers)
    assert event.type == f"video.generation.{outcome}"
    assert event.job_id == job_id and event.status == outcome
    assert headers["content-type"] == "application/json"
    assert headers[IDEMPOTENCY_HEADER.lower()] == f"{job_id}-{outcome}"
    payload = json.loads(body)
    assert body == json.dumps(payload, separators=(",", ":")).encode()  # compact
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["created_at"])
    if outcome == "completed":
        assert list(payload["data"]) == ["generation_id", "id", "model", "status", "unsigned_urls", "usage"]
        assert payload["data"]["unsigned_urls"] == [f"{simulator.api_base}/videos/{job_id}/content?index=0"]
    else:
        assert list(payload["data"]) == ["id", "status", "generation_id", "model", "error"]
        assert payload["data"]["error"] == "Content policy violation"
    # The simulator logs an attempt once it has the answer: after the recorder saw the request.
    [attempt] = wait_for(
        lambda: httpx.get(f"{simulator.admin_url}/deliveries", params={"job_id": job_id}).json()["data"]
    )
    assert len(rec.received) == 1  # that one attempt succeeded, so nothing else is coming
    assert attempt["status"] == 204 and attempt["attempt"] == 1 and attempt["url"] == hook
    assert attempt["headers"][SIGNATURE_HEADER] == headers[SIGNATURE_HEADER.lower()]


def test_webhook_to_workspace_url_with_signed_urls_and_without_secret(
    simulator: RunningSimulator, recorder: tuple[WebhookRecorder, str]
) -> None:
    rec, hook = recorder
    simulator.config.workspace_webhook_url = hook
    simulator.config.webhook_secret = None
    simulator.config.webhook_include_signed_urls = True
    job_id = submit(simulator)["id"]
    [(headers, body)] = rec.wait(1)
    assert SIGNATURE_HEADER.lower() not in headers
    data = json.loads(body)["data"]
    assert data["id"] == job_id and data["expires_at"] > time.time()
    assert httpx.get(data["urls"][0]).status_code == 200


def test_webhook_retries_until_success(
    simulator: RunningSimulator, recorder: tuple[WebhookRecorder, str]
) -> None:
    rec, hook = recorder
    rec.answers = [500, 503]
    job_id = submit(simulator, {**VEO, "callback_url": hook})["id"]
    deliveries = rec.wait(3)
    assert len(deliveries) == 3
    assert {h[IDEMPOTENCY_HEADER.lower()] for h, _ in deliveries} == {f"{job_id}-completed"}
    for headers, body in deliveries:
        verify(simulator.secret, body, headers)
    log = wait_for(
        lambda: (
            (d := httpx.get(f"{simulator.admin_url}/deliveries", params={"job_id": job_id}).json()["data"])
            and len(d) == 3
            and d
        )
    )
    assert [(a["attempt"], a["status"]) for a in log] == [(1, 500), (2, 503), (3, 204)]
    assert log[1]["time"] - log[0]["time"] >= simulator.config.webhook_backoff * 0.9


def test_webhook_transport_errors_are_logged_and_retried(simulator: RunningSimulator) -> None:
    submit(simulator, {**VEO, "callback_url": "http://127.0.0.1:9/nothing-listens"})
    log = wait_for(
        lambda: (d := httpx.get(f"{simulator.admin_url}/deliveries").json()["data"]) and len(d) == 3 and d
    )
    assert [a["status"] for a in log] == [None] * 3 and all(a["error"] for a in log)


def test_webhook_copies_are_delivered_concurrently(
    simulator: RunningSimulator, recorder: tuple[WebhookRecorder, str]
) -> None:
    rec, hook = recorder
    job_id = submit(simulator, {**VEO, "callback_url": hook, "prompt": "x [sim:copies=3]"})["id"]
    deliveries = rec.wait(3)
    # Once the simulator has logged the three answered copies, no other delivery is coming.
    wait_for(
        lambda: (
            len(httpx.get(f"{simulator.admin_url}/deliveries", params={"job_id": job_id}).json()["data"]) == 3
        )
    )
    assert len(rec.received) == 3
    assert {h[IDEMPOTENCY_HEADER.lower()] for h, _ in deliveries} == {f"{job_id}-completed"}
    assert len({b for _, b in deliveries}) == 1


def test_webhook_posts_in_flight_are_bounded_by_webhook_concurrency() -> None:
    in_flight = peak = 0
    lock = threading.Lock()

    async def hook(request: Request) -> Response:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        await asyncio.sleep(0.05)  # held, so that unbounded copies would pile up here
        with lock:
            in_flight -= 1
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with UvicornThread(app) as server, running_simulator(fast_simulator_config(webhook_concurrency=4)) as sim:
        job_id = submit(sim, {**VEO, "callback_url": f"{server.url}/hook", "prompt": "x [sim:copies=20]"})[
            "id"
        ]
        wait_for(lambda: httpx.get(f"{sim.admin_url}/stats").json()["webhooks"]["acked"] == 20, timeout=10)
        assert len(sim.state.deliveries.list(job_id)) == 20
    assert peak == 4


def test_webhook_drop_delivers_nothing(
    simulator: RunningSimulator, recorder: tuple[WebhookRecorder, str]
) -> None:
    rec, hook = recorder
    job_id = submit(simulator, {**VEO, "callback_url": hook}, **{"X-Simulator-Webhook": "drop"})["id"]
    assert wait_status(simulator, job_id)["status"] == "completed"
    time.sleep(0.2)  # the window is the thing under test: nothing at all arrives (no condition to wait for)
    assert rec.received == []
    assert httpx.get(f"{simulator.admin_url}/deliveries").json()["data"] == []


@pytest.mark.parametrize(
    ("mode", "reason"), [("bad_signature", "mismatch"), ("stale", "too_old"), ("future", "too_new")]
)
def test_webhook_bad_signatures_fail_verification(
    simulator: RunningSimulator, recorder: tuple[WebhookRecorder, str], mode: str, reason: str
) -> None:
    rec, hook = recorder
    simulator.config.webhook_attempts = 1
    submit(simulator, {**VEO, "callback_url": hook, "prompt": f"x [sim:webhook={mode}]"})
    [(headers, body)] = rec.wait(1)
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(simulator.secret, body, headers)
    assert info.value.reason == reason


def test_webhook_delay(simulator: RunningSimulator, recorder: tuple[WebhookRecorder, str]) -> None:
    rec, hook = recorder
    job_id = submit(simulator, {**VEO, "callback_url": hook}, **{"X-Simulator-Delay": "0.4"})["id"]
    assert rec.wait(1, timeout=3)
    assert rec.arrivals[0] - admin_job(simulator, job_id)["finished_at"] >= 0.39


# -- error injection, disconnects, admin -------------------------------------------------------


def test_injected_429_with_retry_after_then_success(simulator: RunningSimulator) -> None:
    job_id = submit(simulator)["id"]
    simulator.config.faults.update(
        {"poll_errors": [{"status": 429, "count": 2, "retry_after": 1}, {"status": 502}]}
    )
    url = f"{simulator.api_base}/videos/{job_id}"
    answers = [httpx.get(url, headers=simulator.headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [429, 429, 502, 200]
    assert answers[0].headers["retry-after"] == "1"
    assert answers[0].json()["error"]["code"] == 429
    assert "retry-after" not in answers[2].headers


def test_injected_submit_and_content_errors(simulator: RunningSimulator) -> None:
    httpx.post(
        f"{simulator.admin_url}/faults",
        json={
            "submit_errors": [{"status": 503, "retry_after": 0.2}],
            "content_errors": [{"status": 500, "count": 2}],
        },
    ).raise_for_status()
    refused = httpx.post(f"{simulator.api_base}/videos", json=VEO, headers=simulator.headers)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "0.2"
    assert simulator.state.jobs.all() == []
    done = wait_status(simulator, submit(simulator)["id"])
    assert httpx.get(done["unsigned_urls"][0], headers=simulator.headers).status_code == 500
    assert httpx.get(done["urls"][0]).status_code == 500  # the signed URL counts as content
    assert httpx.get(done["urls"][0]).status_code == 200


@pytest.mark.parametrize("http", ["h11", "httptools"])
@pytest.mark.parametrize("creates_job", [True, False])
def test_submit_disconnect_leaves_outcome_unknown(http: str, creates_job: bool) -> None:
    pytest.importorskip(http)
    with running_simulator(fast_simulator_config(), http=http) as simulator:
        simulator.config.faults.update({"submit_disconnects": 1, "disconnect_creates_job": creates_job})
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            httpx.post(f"{simulator.api_base}/videos", json=VEO, headers=simulator.headers)
        assert len(simulator.state.jobs.all()) == (1 if creates_job else 0)
        assert submit(simulator)["status"] == "pending"  # only the next one was dropped
        assert simulator.config.faults.submit_disconnects == 0


def test_admin_faults_endpoint(simulator: RunningSimulator) -> None:
    url = f"{simulator.admin_url}/faults"
    assert httpx.get(url).json()["outcome"] == "completed"
    merged = httpx.post(url, json={"outcome": "failed", "copies": 2}).json()
    assert merged["outcome"] == "failed" and merged["copies"] == 2 and merged["webhook"] == "normal"
    assert httpx.post(url, json={"webhook": "normal"}).json()["outcome"] == "failed"  # merge, not replace
    for bad in ({"outcome": "great"}, {"nonsense": 1}, {"poll_errors": [{"status": 200}]}, {"copies": 0}):
        response = httpx.post(url, json=bad)
        assert response.status_code == 400, bad
    assert httpx.get(url).json()["outcome"] == "failed"
    assert httpx.delete(url).json()["outcome"] == "completed"


def test_admin_is_absent_when_disabled() -> None:
    with running_simulator(fast_simulator_config(admin=False)) as sim:
        assert httpx.get(f"{sim.admin_url}/faults").status_code == 404


def test_concurrent_submits_polls_and_downloads(simulator: RunningSimulator) -> None:
    async def one(client: httpx.AsyncClient, n: int) -> tuple[str, int]:
        body = {**VEO, "prompt": f"job {n} [sim:pending=0.05, in_progress=0.05, bytes=100000]"}
        job_id = (await client.post("/videos", json=body)).json()["id"]
        while (await client.get(f"/videos/{job_id}")).json()["status"] != "completed":
            await asyncio.sleep(0.02)
        return job_id, len((await client.get(f"/videos/{job_id}/content")).content)

    async def main() -> list[tuple[str, int]]:
        async with httpx.AsyncClient(
            base_url=simulator.api_base, headers=simulator.headers, timeout=10
        ) as client:
            return await asyncio.gather(*(one(client, n) for n in range(40)))

    results = asyncio.run(main())
    assert len({job_id for job_id, _ in results}) == 40
    assert {size for _, size in results} == {100000}
    assert len(simulator.state.jobs) == 40


def test_request_counters(simulator: RunningSimulator) -> None:
    job_id = submit(simulator, {**VEO, "prompt": "x [sim:pending=0, in_progress=0]"})["id"]
    poll(simulator, job_id)
    httpx.get(f"{simulator.api_base}/videos/{job_id}/content", headers=simulator.headers)
    stats = httpx.get(f"{simulator.admin_url}/stats").json()
    assert stats["requests"] == {"submits": 1, "polls": 1, "content": 1, "signed_content": 0, "models": 0}
    assert stats["jobs"] == 1
    assert httpx.delete(f"{simulator.admin_url}/stats").json()["requests"]["polls"] == 0


def test_served_bodies_are_counted_started_and_completed_per_output(simulator: RunningSimulator) -> None:
    size = 600_000
    job_id = submit(simulator, {**VEO, "prompt": f"x [sim:pending=0, in_progress=0, bytes={size}]"})["id"]
    url = f"{simulator.api_base}/videos/{job_id}/content"
    assert len(httpx.get(url, headers=simulator.headers).content) == size
    ranged = httpx.get(url, headers={**simulator.headers, "Range": "bytes=100-"})
    assert ranged.status_code == 206
    httpx.head(url, headers=simulator.headers)  # headers only: no body served
    # A client that hangs up after the first bytes: started, never completed.
    simulator.config.faults.update({"rate": 100_000})
    with httpx.stream("GET", url, headers=simulator.headers) as response:
        next(response.iter_raw(1024))
    key = f"{job_id}/0"

    def cut_off() -> dict | None:
        stats = httpx.get(f"{simulator.admin_url}/stats", params={"detail": 1}).json()["served"]
        return stats if stats["by_output"][key]["in_flight"] == 0 else None

    served = wait_for(cut_off, timeout=10)
    item = served["by_output"][key]
    assert (item["started"], item["completed"], item["ranges"], item["size"]) == (3, 2, 1, size)
    assert 2 * size - 100 < item["bytes_sent"] < 3 * size
    assert served["outputs"] == 1 and served["started"] == 3 and served["completed"] == 2
    assert "by_output" not in httpx.get(f"{simulator.admin_url}/stats").json()["served"]
    assert httpx.delete(f"{simulator.admin_url}/stats").json()["served"]["started"] == 0


def test_polls_in_flight_per_job_show_two_pollers_at_once(simulator: RunningSimulator) -> None:
    first, second = submit(simulator)["id"], submit(simulator)["id"]
    assert httpx.post(f"{simulator.admin_url}/faults", json={"poll_latency": 0.3}).status_code == 200
    for bad in (-1, 61, "x", True):
        assert httpx.post(f"{simulator.admin_url}/faults", json={"poll_latency": bad}).status_code == 400

    async def polls() -> None:
        async with httpx.AsyncClient(base_url=simulator.api_base, headers=simulator.headers) as client:
            await asyncio.gather(client.get(f"/videos/{first}"), client.get(f"/videos/{first}"))
            await client.get(f"/videos/{second}")
            await client.get(f"/videos/{second}")

    started = time.monotonic()
    asyncio.run(polls())
    assert time.monotonic() - started >= 0.9  # each poll was held 0.3 s
    polled = httpx.get(f"{simulator.admin_url}/stats", params={"detail": 1}).json()["polled"]
    assert polled["by_job"][first] == {"count": 2, "in_flight": 0, "max_concurrent": 2}
    assert polled["by_job"][second] == {"count": 2, "in_flight": 0, "max_concurrent": 1}
    assert (polled["jobs"], polled["polls"], polled["max_concurrent"]) == (2, 4, 2)


def test_shutdown_cancels_pending_webhooks() -> None:
    config = fast_simulator_config(pending_seconds=60, workspace_webhook_url="http://127.0.0.1:9/hook")
    with running_simulator(config) as sim:
        submit(sim)
        state = sim.state
        assert state.pending_deliveries == 1
    assert state.pending_deliveries == 0


def test_default_config_values() -> None:
    config = SimulatorConfig()
    assert (config.api_key, config.webhook_secret, config.polling_url_style) == (None, None, "absolute")
    assert (config.webhook_attempts, config.webhook_backoff, config.signed_url_ttl) == (5, 0.5, 3600)
    with pytest.raises(ValueError):
        SimulatorConfig(polling_url_style="sideways")
