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
from receiver_support import API_TOKEN, AUTH, receiver_settings, running_receiver

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
    # The body deadline is an idle gap: 6 bytes, one every 0.2 s, outlast it twice and still count.
    body = b'{"a":1}'
    with open_connection(rx) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for byte in body:
            time.sleep(BODY_TIMEOUT * 0.4)  # the drip is the thing under test
            sock.sendall(bytes([byte]))
        code, _, answer = parse_response(read_until_closed(sock))
    assert code == 400 and "id must be a job id" in json.loads(answer)["error"]["message"]


def test_header_and_body_limits_are_settings() -> None:
    from receiver.settings import Settings

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


_ = AUTH  # used by the later sections
