"""Downloads under hostile conditions (review issue 10): a disk too small for the output, content
cut off with no length to check, dripping servers, a first chunk of 4 bytes, signed URLs aimed at
our own network. Real HTTP on loopback throughout; the disk case on a real 16 MiB tmpfs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from receiver_support import receiver_settings, running_receiver, signed_event, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from support import UvicornThread

from openrouter_video import DownloadError, DownloadTooSlow, OpenRouterVideo, VideoJob
from openrouter_video._mp4check import mp4_structure_problem
from openrouter_video._simulator._mp4 import iter_content, sample_size
from openrouter_video._urlguard import UrlGuard

SECRET = "whsec-test-secret"
KEY = "sk-or-test-key"


def mp4(job_id: str, size: int) -> bytes:
    """The simulator's real MP4 for `job_id`, padded to `size` bytes."""
    return b"".join(bytes(piece) for piece in iter_content(job_id, 0, size))


def upstream(url: str) -> SimpleNamespace:
    """What `receiver_settings` needs to point a receiver at a fake upstream as its API origin."""
    return SimpleNamespace(api_key=KEY, secret=SECRET, api_base=f"{url}/api/v1")


def deliver(rx, job_id: str, **data) -> None:
    body, headers = signed_event(SECRET, {"id": job_id, "status": "completed", **data})
    response = httpx.post(rx.webhook_url, content=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def output(rx, job_id: str) -> dict | None:
    record = rx.job(job_id)
    return record["outputs"][0] if record and record["outputs"] else None


class RawServer:
    """A bare TCP server on 127.0.0.1: `respond(sock, path)` writes whatever bytes it likes."""

    def __init__(self, respond: Callable[[socket.socket, str], None]) -> None:
        self.respond = respond
        self.paths: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(5)

    def hits(self, fragment: str) -> int:
        return sum(fragment in path for path in list(self.paths))

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            path = request.split(b" ", 2)[1].decode()
            self.paths.append(path)
            with contextlib.suppress(OSError):
                self.respond(conn, path)


# -- 2. an output bigger than the free disk ----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[str]:
    """A real 16 MiB tmpfs, unmounted afterwards (needs root)."""
    path = tmp_path / "disk"
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        reason = f"cannot mount a 16 MiB tmpfs: {result.stderr.strip() or result.returncode}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_output_bigger_than_the_space_above_the_floor_waits_for_space_then_completes(
    small_disk, simulator
) -> None:
    floor = 4 * 1024 * 1024
    size = 8_000_000
    settings_ = receiver_settings(
        os.path.join(small_disk, "data"),
        simulator,
        min_free_bytes=floor,
        download_max_attempts=3,  # space waits must not use these up
        download_retry_initial=0.2,
        download_retry_cap=1.0,
    )
    with running_receiver(settings_) as rx, OpenRouterVideo(simulator.api_key, simulator.api_base) as api:
        filler = os.path.join(small_disk, "filler")
        with open(filler, "wb") as fh:
            fh.write(b"\0" * (6 * 1024 * 1024))
        assert shutil.disk_usage(small_disk).free - floor < size  # it does not fit above the floor
        before = httpx.get(f"{simulator.admin_url}/stats").json()["requests"]["content"]
        job = api.submit(
            f"[sim:bytes={size}] too big", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url
        )
        waiting = wait_until(
            lambda: (
                (o := output(rx, job.id)) and (o["error"] or "").startswith("waiting for disk space") and o
            ),
            timeout=15,
            what="the output to wait for disk space",
        )
        assert "bytes" in waiting["error"] and "free above the floor" in waiting["error"]
        started = time.monotonic()
        part = os.path.join(settings_.videos_dir, job.id, "0.mp4.part")
        acked = False
        deadline = started + 20
        while (
            requests := httpx.get(f"{simulator.admin_url}/stats").json()["requests"]["content"]
        ) - before < 5:
            assert time.monotonic() < deadline, "the receiver stopped retrying"
            assert shutil.disk_usage(small_disk).free >= floor  # never a byte into the floor
            assert not os.path.exists(part)
            assert output(rx, job.id)["state"] in ("pending", "downloading")
            if not acked:  # webhooks are still acknowledged while it waits
                body, headers = signed_event(simulator.secret, {"id": "jobMeanwhile1", "status": "failed"})
                acked = httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
                assert acked
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        # Bounded: a growing delay (first ~0.1-0.2 s) between tries, never a download loop.
        assert requests - before <= 2 + elapsed / 0.1, (requests - before, elapsed)
        record = output(rx, job.id)
        # More tries than attempts allowed, and none of them used up: each wait gave its attempt back.
        assert requests - before > 3 and record["state"] == "pending" and record["attempts"] == 0
        assert 'receiver_downloads_total{result="waiting_for_space"}' in rx.get("/metrics").text

        os.unlink(filler)
        done = rx.wait_downloaded(job.id, timeout=20)["outputs"][0]
        sim = httpx.get(f"{simulator.admin_url}/jobs/{job.id}").json()["outputs"][0]
        assert done["bytes"] == size and done["sha256"] == sim["sha256"]
        assert shutil.disk_usage(small_disk).free >= floor


# -- 4. content cut short with no length to check -----------------------------------------------------


def test_mp4_check_accepts_whole_files_and_boxes_of_every_size_form() -> None:
    whole = mp4("jobCheck", 20_000)
    assert mp4_structure_problem(io.BytesIO(whole), len(whole)) is None
    base = mp4("jobCheck", sample_size())
    large = base + struct.pack(">I4sQ", 1, b"free", 16 + 100) + b"x" * 100  # 64-bit largesize
    assert mp4_structure_problem(io.BytesIO(large), len(large)) is None
    assert mp4_structure_problem(io.BytesIO(large[:-1]), len(large) - 1) is not None
    to_end = base + struct.pack(">I4s", 0, b"mdat") + b"y" * 50  # size 0: runs to the end
    assert mp4_structure_problem(io.BytesIO(to_end), len(to_end)) is None
    assert mp4_structure_problem(io.BytesIO(b""), 0) is not None


@settings(max_examples=60, deadline=None)
@given(size=st.integers(sample_size() + 8, 200_000), cut=st.floats(0, 1, exclude_max=True))
def test_mp4_check_rejects_every_truncation_of_a_simulator_video(size: int, cut: float) -> None:
    whole = mp4("jobTrunc", size)
    assert mp4_structure_problem(io.BytesIO(whole), size) is None
    n = int(size * cut)
    if n == sample_size():
        # Cut exactly after the sample's last box: a whole, playable MP4 (only the padding is
        # missing). No structure check can tell; only a Content-Length could.
        assert mp4_structure_problem(io.BytesIO(whole[:n]), n) is None
    else:
        assert mp4_structure_problem(io.BytesIO(whole[:n]), n) is not None
    for boundary in box_ends(whole[: sample_size()])[:-1]:  # between boxes, before the media: rejected
        assert mp4_structure_problem(io.BytesIO(whole[:boundary]), boundary) is not None


def box_ends(data: bytes) -> list[int]:
    """Where each top-level box of `data` (32-bit sizes only) ends."""
    ends = [0]
    while ends[-1] < len(data):
        ends.append(ends[-1] + struct.unpack(">I", data[ends[-1] : ends[-1] + 4])[0])
    return ends[1:]


def test_connection_closed_early_without_a_length_is_retried_never_recorded_done(tmp_path) -> None:
    bodies = {"jobCut1": mp4("jobCut1", 60_000), "jobWhole1": mp4("jobWhole1", 60_000)}

    def respond(conn: socket.socket, path: str) -> None:
        job_id = path.split("/")[4]
        body = bodies[job_id]
        # No Content-Length, no chunking: the body ends when the connection closes.
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n\r\n")
        conn.sendall(body[: len(body) // 2] if job_id == "jobCut1" else body)

    with (
        RawServer(respond) as server,
        running_receiver(receiver_settings(str(tmp_path / "data"), upstream(server.url))) as rx,
    ):
        deliver(rx, "jobWhole1")
        deliver(rx, "jobCut1")
        done = rx.wait_downloaded("jobWhole1")["outputs"][0]  # a close-delimited whole MP4 is fine
        assert done["sha256"] == hashlib.sha256(bodies["jobWhole1"]).hexdigest()

        def retried() -> bool:
            record = output(rx, "jobCut1")
            assert record is None or record["state"] != "done", record
            return server.hits("jobCut1") >= 3 and record is not None and record["attempts"] >= 3

        wait_until(retried, timeout=20, what="the cut download to be retried")
        record = output(rx, "jobCut1")
        assert record["state"] in ("pending", "downloading") and "incomplete MP4" in record["error"]
        assert rx.get("/jobs/jobCut1/content").status_code == 404


# -- 8. dripping downloads must not hold every slot ------------------------------------------------


def drip_app(bodies: dict[str, bytes], hits: list[str]) -> Starlette:
    async def content(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        hits.append(job_id)
        body = bodies[job_id]
        if not job_id.startswith("jobDrip"):
            return Response(body, media_type="video/mp4")

        async def drip():
            for i in range(len(body)):
                yield body[i : i + 1]
                await asyncio.sleep(0.05)  # the drip is the thing under test

        return StreamingResponse(drip(), media_type="video/mp4", headers={"Content-Length": str(len(body))})

    return Starlette(routes=[Route("/api/v1/videos/{job_id}/content", content)])


def test_dripping_downloads_are_cut_and_free_their_slots_for_a_normal_one(tmp_path) -> None:
    bodies = {job: mp4(job, 50_000) for job in ("jobDrip1", "jobDrip2", "jobNormal1")}
    hits: list[str] = []
    with UvicornThread(drip_app(bodies, hits), graceful_shutdown=0.5) as server:
        settings_ = receiver_settings(
            str(tmp_path / "data"),
            upstream(server.url),
            download_concurrency=2,
            download_min_rate=2000.0,
            download_rate_grace=0.5,
            download_deadline_base=2.0,
        )
        with running_receiver(settings_) as rx:
            deliver(rx, "jobDrip1")
            deliver(rx, "jobDrip2")
            wait_until(
                lambda: all(
                    (output(rx, j) or {}).get("state") == "downloading" for j in ("jobDrip1", "jobDrip2")
                ),
                what="both drips to hold both slots",
            )
            started = time.monotonic()
            deliver(rx, "jobNormal1")
            done = rx.wait_downloaded("jobNormal1", timeout=10)["outputs"][0]
            assert time.monotonic() - started < 10
            assert done["sha256"] == hashlib.sha256(bodies["jobNormal1"]).hexdigest()
            for job in ("jobDrip1", "jobDrip2"):
                record = wait_until(
                    lambda job=job: (o := output(rx, job)) and o["error"] and o,
                    what=f"{job}'s retry to be recorded",
                )
                assert "slower than the minimum rate 2000 bytes/s" in record["error"]
                assert record["state"] != "done"


def test_sync_client_cuts_a_drip_too(tmp_path) -> None:
    bodies = {"jobDrip3": mp4("jobDrip3", 50_000)}
    with UvicornThread(drip_app(bodies, []), graceful_shutdown=0.5) as server:
        job = VideoJob.from_api({"id": "jobDrip3", "status": "completed"})
        with OpenRouterVideo(
            KEY, f"{server.url}/api/v1", download_min_rate=2000, download_rate_grace=0.5
        ) as api:
            started = time.monotonic()
            with pytest.raises(DownloadTooSlow, match="slower than the minimum rate"):
                api.download(job, dest=str(tmp_path / "drip.mp4"))
            assert time.monotonic() - started < 10
        assert os.listdir(tmp_path) == []


# -- 9. the first bytes arrive in a small write --------------------------------------------------


def test_mp4_whose_first_4_bytes_arrive_alone_is_a_video(tmp_path) -> None:
    body = mp4("jobSplit1", 40_000)

    def respond(conn: socket.socket, path: str) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        conn.sendall(head.encode() + body[:4])
        time.sleep(0.2)  # the fake's behaviour, not a wait in the test: the rest comes in a later segment
        conn.sendall(body[4:])

    with (
        RawServer(respond) as server,
        running_receiver(receiver_settings(str(tmp_path / "data"), upstream(server.url))) as rx,
    ):
        deliver(rx, "jobSplit1")
        done = rx.wait_downloaded("jobSplit1")["outputs"][0]
        assert done["attempts"] == 1 and done["sha256"] == hashlib.sha256(body).hexdigest()


# -- 11. signed URLs aimed at our own network ---------------------------------------------------------


def test_signed_urls_to_another_loopback_service_are_not_fetched(tmp_path, simulator) -> None:
    seen: list[str] = []

    async def record(request: Request) -> Response:
        seen.append(str(request.url))
        return Response(mp4("jobElsewhere", 20_000), media_type="video/mp4")

    with (
        UvicornThread(Starlette(routes=[Route("/{path:path}", record)])) as other,
        running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx,
    ):
        with OpenRouterVideo(simulator.api_key, simulator.api_base) as api:
            job = api.wait(api.submit("plain", model="google/veo-3.1", duration=4), first_interval=0.05)
        deliver_sim = {
            "urls": [f"{other.url}/storage/{job.id}/0.mp4?sig=x"],
            "unsigned_urls": [f"{other.url}/api/v1/videos/{job.id}/content?index=0"],
        }
        body, headers = signed_event(simulator.secret, {"id": job.id, "status": "completed", **deliver_sim})
        assert httpx.post(rx.webhook_url, content=body, headers=headers).status_code == 200
        done = rx.wait_downloaded(job.id)["outputs"][0]
    assert seen == []
    sim = httpx.get(f"{simulator.admin_url}/jobs/{job.id}").json()["outputs"][0]
    assert done["sha256"] == sim["sha256"]  # from the keyed API content endpoint, the fallback source


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/v.mp4",  # public, but not https
        "ws://93.184.216.34/v.mp4",
        "https://127.0.0.1:9/v.mp4",
        "https://localhost/v.mp4",
        "https://10.1.2.3/v.mp4",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/v.mp4",
        "https://[::ffff:192.168.0.1]/v.mp4",
    ],
)
def test_url_guard_refuses_non_https_and_non_global_addresses(url: str) -> None:
    guard = UrlGuard(httpx.URL("https://openrouter.ai/api/v1"))
    with pytest.raises(DownloadError, match="refusing to download"):
        guard.check_url(httpx.URL(url))
    assert (
        UrlGuard(httpx.URL("https://openrouter.ai/api/v1"), allow_private=True).check_url(
            httpx.URL("https://10.1.2.3/v.mp4")
        )
        is False
    )


def test_url_guard_checks_every_dns_answer_and_trusts_the_api_host() -> None:
    guard = UrlGuard(httpx.URL("http://127.0.0.1:8080/api/v1"))
    assert guard.check_url(httpx.URL("http://127.0.0.1:8080/storage/x.mp4")) is False
    with pytest.raises(DownloadError, match="scheme 'http'"):  # the same host, another service
        guard.check_url(httpx.URL("http://127.0.0.1:8081/storage/x.mp4"))
    url = httpx.URL("https://cdn.example/v.mp4")
    assert guard.check_url(url) is True  # a name: resolve, then check
    public = (2, 1, 6, "", ("93.184.216.34", 443))
    guard.check_resolved(url, [public])
    with pytest.raises(DownloadError, match="non-public address 10.0.0.7"):
        guard.check_resolved(url, [public, (2, 1, 6, "", ("10.0.0.7", 443))])
    with pytest.raises(DownloadError, match="does not resolve"):
        guard.check_resolved(url, [])
