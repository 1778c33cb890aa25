"""The receiver's edges under abuse (review issue 10): header blocks, slow clients, /metrics injection,
odd query values and request bodies.

Everything runs against a real receiver under uvicorn on loopback, configured as `openrouter-video
serve` configures it (receiver.server). Tests about connections write raw bytes on a socket: an HTTP
client would not send half a header, or stop in the middle of a body.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from receiver_support import API_TOKEN, AUTH, receiver_settings, running_receiver, wait_until

from openrouter_video import OpenRouterVideo
from openrouter_video.receiver.metrics import Metrics

# Short deadlines so the slow-client tests run in about a second.
HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5


@pytest.fixture
def rx(tmp_path, simulator):
    settings = receiver_settings(
        str(tmp_path / "data"), simulator, header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT
    )
    with running_receiver(settings) as receiver:
        yield receiver


def open_connection(rx) -> socket.socket:
    host, port = rx.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_until_closed(sock: socket.socket, within: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open `within`."""
    deadline = time.monotonic() + within
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"connection still open after {within}s; received {data[:300]!r}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            continue
        if not chunk:
            return data
        data += chunk


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0])
    assert match, raw[:300]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(match.group(1)), headers, body


def assert_error_envelope(raw: bytes, status: int) -> str:
    code, headers, body = parse_response(raw)
    assert code == status, raw[:300]
    assert headers["connection"] == "close"
    payload = json.loads(body)
    assert payload["error"]["code"] == status
    return payload["error"]["message"]


# -- 6. request header block: size and count caps -------------------------------------------------


def test_oversize_header_block_is_refused_once_the_cap_is_crossed(rx) -> None:
    # The block never ends: the answer can only come from counting the bytes as they arrive.
    with open_connection(rx) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (64 * 1024 + 100))
        message = assert_error_envelope(read_until_closed(sock), 431)
    assert "65536 bytes" in message


def test_a_16_mib_header_block_is_cut_off_not_read(rx) -> None:
    sent = 0
    stopped: list[BaseException] = []

    def pour(sock: socket.socket) -> None:
        nonlocal sent
        piece = b"a" * 65536
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            for _ in range(16 * 16):  # 16 MiB in 64 KiB pieces
                sock.sendall(piece)
                sent += len(piece)
        except OSError as exc:
            stopped.append(exc)

    with open_connection(rx) as sock:
        pourer = threading.Thread(target=pour, args=(sock,), daemon=True)
        pourer.start()
        raw = read_until_closed(sock, within=10)
        pourer.join(10)
    assert not pourer.is_alive()
    assert stopped, f"the server read all {sent} bytes of the header block"
    assert sent < 16 * 1024 * 1024
    if raw:  # the 431 may be lost to the reset when the server closes with our bytes unread
        assert_error_envelope(raw, 431)


def test_too_many_headers_are_refused_and_a_full_allowance_is_served(rx) -> None:
    def request(header_count: int) -> bytes:
        extra = b"".join(b"X-H%d: v\r\n" % i for i in range(header_count - 2))
        with open_connection(rx) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n")
            return read_until_closed(sock)

    assert parse_response(request(100))[0] == 200
    assert "more than 100 request headers" in assert_error_envelope(request(101), 431)
    # A big block just under the byte cap is still a normal request.
    big = httpx.get(f"{rx.url}/healthz", headers={"X-Big": "b" * 60_000}, timeout=5)
    assert big.status_code == 200


# -- 7. slow clients: header and body deadlines ---------------------------------------------------


def test_slow_and_silent_connections_are_closed_while_others_are_served(rx) -> None:
    started = time.monotonic()
    silent, half_header, partial_body = (open_connection(rx) for _ in range(3))
    with silent, half_header, partial_body:
        half_header.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ab")
        partial_body.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        assert httpx.get(f"{rx.url}/healthz", timeout=5).status_code == 200  # the loop is not stuck

        assert read_until_closed(silent) == b""  # nothing was asked, so nothing is answered
        assert "headers not received" in assert_error_envelope(read_until_closed(half_header), 408)
        assert "body stalled" in assert_error_envelope(read_until_closed(partial_body), 408)
    assert time.monotonic() - started < 5
    assert httpx.get(f"{rx.url}/healthz", timeout=5).status_code == 200


def test_a_body_that_keeps_arriving_is_not_cut_off(rx) -> None:
    # The gap limit: 7 bytes, one every 0.3 timeouts, outlast the timeout twice over and still count
    # (within the whole-body limit of 3 timeouts).
    body = b'{"a":1}'
    with open_connection(rx) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for byte in body:
            time.sleep(BODY_TIMEOUT * 0.3)  # the drip is the thing under test
            sock.sendall(bytes([byte]))
        code, _, answer = parse_response(read_until_closed(sock))
    # Read whole: a body without an id is a submit, refused for want of its Idempotency-Key.
    assert code == 400 and "Idempotency-Key" in json.loads(answer)["error"]["message"]


def test_a_body_dripping_inside_the_gap_is_cut_at_the_whole_body_limit(rx) -> None:
    started = time.monotonic()
    with open_connection(rx) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        closed = b""
        for _ in range(100):  # bounded: the cut comes after about 3 timeouts (12 drips)
            time.sleep(BODY_TIMEOUT * 0.25)  # the drip is the thing under test
            try:
                sock.sendall(b" ")
            except OSError:
                break
            sock.settimeout(0.01)
            try:
                closed = sock.recv(65536)
            except TimeoutError:
                continue
            break
        sock.settimeout(5)
        answer = closed + read_until_closed(sock)
    assert "not received whole within" in assert_error_envelope(answer, 408)
    assert time.monotonic() - started < BODY_TIMEOUT * 6


def test_header_and_body_limits_are_settings() -> None:
    from openrouter_video.receiver.settings import Settings

    env = {
        "OPENROUTER_API_KEY": "k",
        "OPENROUTER_WEBHOOK_SECRET": "s",
        "RECEIVER_MAX_HEADER_BYTES": "8192",
        "RECEIVER_MAX_HEADERS": "20",
        "RECEIVER_HEADER_TIMEOUT": "2.5",
        "RECEIVER_BODY_TIMEOUT": "3",
    }
    settings = Settings.from_env(env)
    assert (settings.max_header_bytes, settings.max_headers) == (8192, 20)
    assert (settings.header_timeout, settings.body_timeout) == (2.5, 3.0)
    defaults = Settings.from_env({"OPENROUTER_API_KEY": "k", "OPENROUTER_WEBHOOK_SECRET": "s"})
    assert (defaults.max_header_bytes, defaults.max_headers) == (64 * 1024, 100)


# -- 13. GET /jobs/{id}/content?index=: ASCII digits within range ---------------------------------


@pytest.mark.parametrize("index", ["\u00b2", "\u0663", "9" * 5000, str(2**63), "-1", "1e3", ""])
def test_odd_content_indexes_are_a_400_not_a_crash(rx, index) -> None:
    response = httpx.get(f"{rx.url}/jobs/jobIndex1/content", params={"index": index}, headers=AUTH, timeout=5)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("index must be a whole number") and "\n" not in message


def test_the_largest_valid_index_is_simply_not_there(rx) -> None:
    response = httpx.get(
        f"{rx.url}/jobs/jobIndex1/content", params={"index": str(2**63 - 1)}, headers=AUTH, timeout=5
    )
    assert response.status_code == 404


# -- 14. POST /jobs: JSON nested too deep ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id": "jobDeep1", "extra": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    ],
    ids=["array", "inside-an-object"],
)
def test_deeply_nested_json_is_a_400(rx, body) -> None:
    response = httpx.post(f"{rx.url}/jobs", content=body, headers=AUTH, timeout=10)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["message"] == "body JSON is nested too deeply"
    assert rx.job("jobDeep1") is None


# -- 15. request body cap on every route, field lengths on POST /jobs -----------------------------


@pytest.mark.parametrize("request_line", [b"POST /jobs", b"GET /healthz", b"GET /jobs", b"POST /metrics"])
def test_a_declared_oversize_body_is_refused_at_once_on_any_route(rx, request_line) -> None:
    # 20 MiB announced, none of it sent: 413 at once (not 408 at the body deadline), whatever the route.
    with open_connection(rx) as sock:
        sock.sendall(
            request_line + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 20971520\r\n\r\n"
        )
        message = assert_error_envelope(read_until_closed(sock), 413)
    assert message == "request body larger than 1048576 bytes"


def test_an_undeclared_oversize_body_is_counted_and_refused(rx) -> None:
    # Chunked: no Content-Length to go by, so the bytes are counted as the handler reads them.
    chunk = b"x" * 65536
    with open_connection(rx) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + API_TOKEN.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(17):  # 1 MiB + 64 KiB
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:
            pass  # the server may have answered and closed already
        message = assert_error_envelope(read_until_closed(sock), 413)
    assert message == "request body larger than 1048576 bytes"


def test_a_huge_prompt_is_refused_with_the_body_cap(rx) -> None:
    body = json.dumps({"id": "jobHuge1", "prompt": "p" * (20 * 1024 * 1024)}).encode()
    with open_connection(rx) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert_error_envelope(read_until_closed(sock), 413)
    assert rx.job("jobHuge1") is None


@pytest.mark.parametrize(("field", "limit"), [("prompt", 10_000), ("model", 200)], ids=["prompt", "model"])
def test_field_lengths_are_capped_with_a_message_naming_field_and_limit(rx, field, limit) -> None:
    at_limit = rx.post("/jobs", json={"id": f"jobLen{field}1", field: "x" * limit})
    assert at_limit.status_code == 201, at_limit.text[:300]
    over = rx.post("/jobs", json={"id": f"jobLen{field}2", field: "x" * (limit + 1)})
    assert over.status_code == 400
    assert over.json()["error"]["message"] == f"{field}: Expected `str` of length <= {limit}"
    assert rx.job(f"jobLen{field}2") is None


JOBS_BODY = 'OpenRouter\'s POST /videos body, or {"id": ...} to track a job'  # POST /jobs takes either


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", f"body must be JSON: {JOBS_BODY}"),
        (b"[1, 2]", f"body must be a JSON object: {JOBS_BODY}"),
        (b"\xff\xfe\x00", f"body must be JSON: {JOBS_BODY}"),
    ],
)
def test_bad_bodies_get_one_line_400s(rx, body, message) -> None:
    response = rx.post("/jobs", content=body)
    assert response.status_code == 400 and response.json()["error"]["message"] == message


# -- 10. /metrics: upstream text cannot add series ------------------------------------------------

EVIL_STATUS = 'x"} 1\nreceiver_evil 1\n#'
EXPECTED_SAMPLES = {
    "receiver_deliveries_total",
    "receiver_deliveries_applied_total",
    "receiver_verification_failures_total",
    "receiver_downloads_total",
    "receiver_download_bytes_total",
    "receiver_fallback_polls_total",
    "receiver_fetch_queue_depth",
    "receiver_deliveries_pending",
    "receiver_disk_free_bytes",
    "receiver_waits_open",
    "receiver_event_streams_open",
    "receiver_notifications_pending",
    "receiver_notifications_dead",
    "receiver_jobs",  # by status: an unknown upstream status is `other`, like the counters' labels
    *(
        f"receiver_{h}_seconds_{part}"
        for h in ("webhook_stored", "request")
        for part in ("bucket", "count", "sum")
    ),
}


def samples(text: str) -> list:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def test_a_polled_status_cannot_inject_series_into_metrics(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, fallback_after=0.05)
    with (
        running_receiver(settings) as receiver,
        OpenRouterVideo(simulator.api_key, base_url=simulator.api_base) as api,
    ):
        job = api.submit("metrics injection", model="google/veo-3.1", duration=4)  # no webhook: polled
        sim_job = simulator.state.jobs.get(job.id)
        sim_job.outcome, sim_job.pending, sim_job.in_progress = EVIL_STATUS, 0, 0  # every poll says it
        assert receiver.post("/jobs", json={"id": job.id}).status_code == 201

        wait_until(
            lambda: "receiver_fallback_polls_total{" in receiver.get("/metrics").text,
            timeout=10,
            what="a fallback poll to be counted",
        )
        found = samples(receiver.get("/metrics").text)
    assert {s.name for s in found} <= EXPECTED_SAMPLES
    results = {s.labels["result"] for s in found if s.name == "receiver_fallback_polls_total"}
    assert EVIL_STATUS not in results and "other" in results
    assert EVIL_STATUS not in {s.labels.get("status") for s in found if s.name == "receiver_jobs"}


def test_label_values_outside_the_declared_set_are_counted_as_other() -> None:
    metrics = Metrics()
    metrics.inc("receiver_fallback_polls_total", result=EVIL_STATUS)
    metrics.inc("receiver_downloads_total", result="done")
    found = samples(metrics.render())
    assert {s.name for s in found} <= EXPECTED_SAMPLES
    assert metrics.value("receiver_fallback_polls_total", result="other") == 1
    assert metrics.value("receiver_downloads_total", result="done") == 1
    assert all(
        "receiver_evil" not in line for line in metrics.render().splitlines() if not line.startswith("#")
    )
