"""The dashboard over plain HTTP (no browser): headers, the session cookie behind a TLS proxy, CSRF and
Origin refusals, sign-in throttling, no-auth mode, the live-stream cap, and a shutdown that does not
wait for open live streams."""

from __future__ import annotations

import contextlib
import os
import time

import httpx
import pytest
from dashboard_support import csrf_of, http_session
from receiver_support import API_TOKEN, ReceiverProcess, receiver_settings, running_receiver

from openrouter_video.receiver.ui import auth, live


@pytest.fixture
def receiver(simulator, tmp_path):
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        yield rx


def test_pages_carry_a_strict_csp_and_the_root_leads_to_the_dashboard(receiver) -> None:
    assert httpx.get(f"{receiver.url}/").headers["location"] == "/ui/"
    with http_session(receiver.url, API_TOKEN) as client:
        for path in ("/ui/", "/ui/ops", "/ui/static/app.css", "/ui/signin"):
            answer = client.get(path)
            assert answer.status_code in (200, 303), path
            csp = answer.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "same-origin"
        page = client.get("/ui/")
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text and " style=" not in page.text and "onclick" not in page.text
        assert API_TOKEN not in page.text


def test_the_session_cookie_is_secure_behind_a_tls_proxy_and_scoped(simulator, tmp_path) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    process = ReceiverProcess(settings).start()  # serve trusts 127.0.0.1's X-Forwarded-Proto by default
    try:
        client = httpx.Client(base_url=process.url, headers={"X-Forwarded-Proto": "https"})
        form = client.get("/ui/signin")
        assert "secure" in form.headers["set-cookie"].lower()  # the sign-in nonce cookie
        nonce = form.cookies["orv_signin"]
        answer = client.post(
            "/ui/signin",
            data={"nonce": nonce, "token": API_TOKEN, "next": "/ui/"},
            # A Secure cookie is not sent back over this plain-HTTP hop by httpx: sent by hand, as the proxy would.
            headers={"Origin": f"https://127.0.0.1:{process.port}", "Cookie": f"orv_signin={nonce}"},
        )
        assert answer.status_code == 303, answer.text[:300]
        cookie = answer.headers["set-cookie"]
        for part in ("HttpOnly", "Secure", "SameSite=strict", "Path=/ui"):
            assert part.lower() in cookie.lower(), cookie
        with open(process.log_path) as fh:
            assert API_TOKEN not in fh.read()
    finally:
        process.stop()


def test_state_changing_posts_need_the_csrf_token_and_the_same_origin(receiver) -> None:
    with http_session(receiver.url, API_TOKEN) as client:
        csrf = csrf_of(client.get("/ui/ops").text)
        refused = [
            client.post("/ui/deliveries/reprocess", data={}),
            client.post("/ui/deliveries/reprocess", data={"csrf": "x" * 32}),
            client.post(
                "/ui/deliveries/reprocess", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
            ),
            client.post(
                "/ui/deliveries/reprocess", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
            ),
            client.post("/ui/signout", data={}),
        ]
        assert [r.status_code for r in refused] == [403] * 5
        ok = client.post("/ui/deliveries/reprocess", data={"csrf": csrf}, headers={"Origin": receiver.url})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/ops"
        assert "Nothing to reprocess" in client.get("/ui/ops").text  # the flash message, once
        signed_out = client.post("/ui/signout", data={"csrf": csrf})
        assert signed_out.status_code == 303
    # The cookie was cleared; an old copy of it still verifies until it expires (stateless sessions).


def test_wrong_tokens_are_throttled_per_address(receiver, monkeypatch) -> None:
    monkeypatch.setattr(auth, "FAILURES_PER_ADDRESS", 3)
    client = httpx.Client(base_url=receiver.url)
    nonce = client.get("/ui/signin").cookies["orv_signin"]
    answers = [
        client.post("/ui/signin", data={"nonce": nonce, "token": f"wrong-{n}", "next": "/ui/"}).status_code
        for n in range(4)
    ]
    assert answers == [200, 200, 200, 429]
    throttled = client.post("/ui/signin", data={"nonce": nonce, "token": API_TOKEN, "next": "/ui/"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert "orv_session" not in throttled.headers.get("set-cookie", "")


def test_a_forged_or_expired_cookie_is_no_session(receiver) -> None:
    with http_session(receiver.url, API_TOKEN) as client:
        value = client.cookies["orv_session"]
        _v, sid, issued, _expires, _sig = value.split(".")
        forged = f"v1.{sid}.{issued}.{int(time.time()) + 10**6}.{_sig}"
        client.cookies.set("orv_session", forged, path="/ui")
        answer = client.get("/ui/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/signin")
        assert client.get("/ui/events").status_code == 401
        assert client.get("/ui/jobs/x/content?index=0").status_code == 401


def test_without_a_token_everyone_is_signed_in_and_told_so(simulator, tmp_path) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, api_token=None)
    with running_receiver(settings) as rx, httpx.Client(base_url=rx.url) as client:
        page = client.get("/ui/")
        assert page.status_code == 200 and "no sign-in (loopback)" in page.text
        assert "orv_session" in page.headers["set-cookie"]
        with contextlib.closing(rx.db()) as conn:  # a delivery not applied: the page shows a form
            conn.execute(
                "INSERT INTO deliveries (idempotency_key, received_at, headers, body, state, error) "
                "VALUES ('k', 0, '{}', x'7b7d', 'failed', 'not an event')"
            )
        csrf = csrf_of(client.get("/ui/ops").text)
        assert client.post("/ui/deliveries/reprocess", data={"csrf": csrf}).status_code == 303
        assert client.post("/ui/deliveries/reprocess", data={}).status_code == 403


def test_live_streams_are_capped(receiver, monkeypatch) -> None:
    monkeypatch.setattr(live, "MAX_STREAMS", 2)
    with http_session(receiver.url, API_TOKEN) as client:
        # The hub was built with the app; cap it through the app's own object.
        hubs = list(live._hubs)
        for hub in hubs:
            monkeypatch.setattr(hub, "max_streams", 2)
        with client.stream("GET", "/ui/events") as first, client.stream("GET", "/ui/events") as second:
            assert first.status_code == second.status_code == 200
            # A stream counts once its first bytes are out (the hub registers it as it starts). The
            # iterators are kept: a dropped one closes its response, and the server ends that stream.
            reading = [stream.iter_bytes() for stream in (first, second)]
            assert all(next(chunks).startswith(b"retry:") for chunks in reading)
            third = client.get("/ui/events")
            assert third.status_code == 503 and third.headers["retry-after"] == "5"


def test_serve_stops_promptly_with_live_streams_open(simulator, tmp_path) -> None:
    process = ReceiverProcess(receiver_settings(str(tmp_path / "data"), simulator)).start()
    try:
        with http_session(process.url, API_TOKEN) as client, client.stream("GET", "/ui/events") as stream:
            chunks = stream.iter_bytes()  # kept: a dropped iterator closes the response (and the stream)
            assert next(chunks).startswith(b"retry:")
            started = time.monotonic()
            assert process.process is not None
            process.process.terminate()
            process.process.wait(20)
            took = time.monotonic() - started
        assert took < 5, f"serve took {took:.1f}s to stop with a live stream open (graceful timeout is 30 s)"
    finally:
        process.stop()
        if process.process and process.process.poll() is None:
            os.kill(process.process.pid, 9)
