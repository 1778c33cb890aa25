"""The receiver under attack: forged, replayed, malformed and oversize deliveries, path tricks, auth, leaks.

Everything runs over real HTTP on loopback against a real SQLite file. Where a URL must reach the
server byte for byte (dot segments, `%00`, raw unicode), requests are written on a plain socket:
HTTP clients normalise such paths before sending them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from receiver_support import (
    API_TOKEN,
    AUTH,
    ReceiverProcess,
    receiver_settings,
    running_receiver,
    signed_event,
    wait_until,
)

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, OpenRouterVideo, sign
from openrouter_video.receiver.settings import Secret, Settings

HEX_SIGNATURE = re.compile(r"v1=[0-9a-fA-F]{16,}")


@pytest.fixture
def receiver(tmp_path, simulator):
    with running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        yield rx


def raw_http(base_url: str, request: bytes, timeout: float = 15.0) -> tuple[int | None, bytes]:
    """Send `request` exactly as given; return (status or None if no answer, raw response)."""
    parts = urlsplit(base_url)
    data = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    return (int(match.group(1)) if match else None), data


def raw_get(base_url: str, target: bytes, *, token: str | None = API_TOKEN) -> tuple[int | None, bytes]:
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n" if token else b""
    return raw_http(
        base_url, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + b"Connection: close\r\n\r\n"
    )


def stored_keys(rx) -> set[str]:
    return {d["idempotency_key"] for d in rx.deliveries()}


# -- forged and replayed -------------------------------------------------------------------------


def test_forgeries_that_reuse_parts_of_a_genuine_delivery_are_refused(receiver, simulator) -> None:
    secret = simulator.secret.encode()
    body, headers = signed_event(simulator.secret, {"id": "jobForge2", "status": "failed", "error": "x"})
    t = int(time.time())

    def mac(data: bytes, algo: str = "sha256") -> str:
        return hmac.new(secret, data, algo).hexdigest()

    tampered = body.replace(b'"error":"x"', b'"error":"y"')
    respaced = json.dumps(json.loads(body)).encode()  # same JSON, other bytes
    cases = {
        "body changed after signing": (tampered, headers[SIGNATURE_HEADER]),
        "same JSON re-serialised": (respaced, headers[SIGNATURE_HEADER]),
        "timestamp changed after signing": (
            body,
            re.sub(r"t=\d+", f"t={t + 1}", sign(simulator.secret, body, t)),
        ),
        "mac of the body alone": (body, f"t={t},v1={mac(body)}"),
        "mac without the comma": (body, f"t={t},v1={mac(str(t).encode() + body)}"),
        "sha1 mac": (body, f"t={t},v1={mac(str(t).encode() + b',' + body, 'sha1')}"),
        "plain sha256 of the body": (
            body,
            f"t={t},v1={hashlib.sha256(str(t).encode() + b',' + body).hexdigest()}",
        ),
        "secret as the signature": (body, f"t={t},v1={simulator.secret}"),
    }
    for name, (payload, signature) in cases.items():
        response = httpx.post(
            receiver.webhook_url, content=payload, headers={**headers, SIGNATURE_HEADER: signature}
        )
        assert response.status_code == 401, name
        assert response.json()["error"]["reason"] == "mismatch", name
    assert receiver.delivery_count() == 0
    assert receiver.job("jobForge2") is None


def test_a_replay_after_the_tolerance_is_refused_and_one_inside_it_changes_nothing(
    tmp_path, simulator
) -> None:
    # 4 s: short to wait out, yet seconds of margin for the in-window part on a loaded machine.
    settings = receiver_settings(str(tmp_path / "data"), simulator, webhook_tolerance=4)
    with running_receiver(settings) as rx:
        signed_at = int(time.time())
        body, headers = signed_event(
            simulator.secret, {"id": "jobReplay1", "status": "failed", "error": "boom"}, timestamp=signed_at
        )
        first = httpx.post(rx.webhook_url, content=body, headers=headers)
        assert first.status_code == 200 and first.json()["outcome"] == "accepted"
        before = rx.job("jobReplay1")
        # Inside the window, with a fresh (unsigned) idempotency key: the same signed request (same
        # timestamp, same body) is known by its replay key, answered as a duplicate and not stored.
        again = httpx.post(
            rx.webhook_url, content=body, headers={**headers, IDEMPOTENCY_HEADER: "attacker-key"}
        )
        assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
        assert rx.job("jobReplay1")["events"] == before["events"]
        assert rx.job("jobReplay1")["updated_at"] == before["updated_at"]
        wait_until(lambda: time.time() - signed_at > 4.2, timeout=15, what="the tolerance to pass")
        for key in (headers[IDEMPOTENCY_HEADER], "another-fresh-key"):
            late = httpx.post(rx.webhook_url, content=body, headers={**headers, IDEMPOTENCY_HEADER: key})
            assert late.status_code == 401, key
            assert late.json()["error"]["reason"] == "too_old"
        assert stored_keys(rx) == {"jobReplay1-failed"}
        assert rx.job("jobReplay1")["events"] == before["events"]


# -- malformed signature headers ----------------------------------------------------------------


def _signature_shapes(secret: str, body: bytes) -> list[tuple[str, bytes, set[str]]]:
    now = int(time.time())
    good = sign(secret, body, now).split("v1=")[1]
    arabic_now = "".join(chr(0x660 + int(d)) for d in str(now))
    return [
        ("empty", b"", {"missing"}),
        ("one word", b"garbage", {"malformed"}),
        ("empty timestamp", b"t=", {"malformed"}),
        ("no timestamp", f"v1={good}".encode(), {"malformed"}),
        ("no v1", f"t={now}".encode(), {"no_signature"}),
        ("empty v1", f"t={now},v1=".encode(), {"mismatch"}),
        ("letters as timestamp", f"t=abc,v1={good}".encode(), {"malformed"}),
        ("fractional timestamp", f"t={now}.0,v1={good}".encode(), {"malformed"}),
        ("negative timestamp", f"t=-{now},v1={good}".encode(), {"malformed"}),
        ("exponent timestamp", f"t=1e9,v1={good}".encode(), {"malformed"}),
        ("two timestamps", f"t={now},t={now},v1={good}".encode(), {"malformed"}),
        ("semicolons", f"t={now};v1={good}".encode(), {"malformed"}),
        ("spaces only", f"t={now} v1={good}".encode(), {"malformed"}),
        ("upper-case names", f"T={now},V1={good}".encode(), {"malformed"}),
        ("16-digit timestamp", f"t={'9' * 16},v1={good}".encode(), {"malformed"}),
        ("far future", f"t={'9' * 15},v1={good}".encode(), {"too_new"}),
        ("epoch", f"t=0,v1={good}".encode(), {"too_old"}),
        ("truncated mac", f"t={now},v1={good[:-1]}".encode(), {"mismatch"}),
        ("mac with a suffix", f"t={now},v1={good}00".encode(), {"mismatch"}),
        ("other scheme version", f"t={now},v0={good},v2={good}".encode(), {"no_signature"}),
        ("arabic-indic digits", f"t={arabic_now},v1={good}".encode(), {"malformed"}),
        ("latin-1 bytes", b"t=\xff\xfe,v1=" + good.encode(), {"malformed"}),
        ("utf-8 mac", f"t={now},v1={'é' * 64}".encode(), {"mismatch"}),
        (
            "thousands of candidates",
            (f"t={now}," + ",".join(["v1=" + "0" * 64] * 150)).encode(),
            {"mismatch"},
        ),
        ("many commas", f"t={now}{',' * 3000}v1={'0' * 64}".encode(), {"mismatch"}),
    ]


def test_malformed_signature_headers_are_refused_without_a_server_error(receiver, simulator) -> None:
    body, headers = signed_event(simulator.secret, {"id": "jobShape1", "status": "failed", "error": "x"})
    for name, value, reasons in _signature_shapes(simulator.secret, body):
        response = httpx.post(
            receiver.webhook_url, content=body, headers={**headers, SIGNATURE_HEADER: value}
        )
        assert response.status_code == 401, (name, response.status_code, response.text[:200])
        assert response.json()["error"]["reason"] in reasons, (name, response.json())
    assert receiver.delivery_count() == 0
    assert receiver.job("jobShape1") is None
    # The genuine header still works: the refusals above were about the header, not the body.
    assert httpx.post(receiver.webhook_url, content=body, headers=headers).status_code == 200


# -- bodies that are not events -----------------------------------------------------------------

ODD_BODIES = {
    "not utf-8": b"\xff\xfe\x00\x81 not text",
    "empty": b"",
    "json null": b"null",
    "json array": b"[1, 2, 3]",
    "json string": b'"video.generation.completed"',
    "empty object": b"{}",
    "no data": b'{"type":"video.generation.completed"}',
    "other event type": b'{"type":"payment.succeeded","data":{"id":"jobOther1","status":"completed"}}',
    "numeric id": b'{"type":"video.generation.completed","data":{"id":123,"status":"completed"}}',
    "null status": b'{"type":"video.generation.failed","data":{"id":"jobNull1","status":null}}',
    "truncated json": b'{"type":"video.generation.completed","data":{"id":"jobCut1"',
    "utf-16": '{"type":"video.generation.failed","data":{"id":"jobU16","status":"failed"}}'.encode("utf-16"),
    "lone surrogate in a field": b'{"type":"video.generation.failed","data":{"id":"jobSurrogate1",'
    b'"status":"failed","error":"bad \\ud800 text","model":"m\\udfff"}}',
    "lone surrogate in the status": b'{"type":"video.generation.failed","data":{"id":"jobSurrogate2",'
    b'"status":"fa\\ud800iled"}}',
    "infinite cost": b'{"type":"video.generation.failed","data":{"id":"jobInfinity1","status":"failed",'
    b'"usage":{"cost":1e999}}}',
    "NaN cost": b'{"type":"video.generation.failed","data":{"id":"jobNaN1","status":"failed",'
    b'"usage":{"cost":NaN}}}',
}


@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_signed_bodies_that_are_not_clean_events_are_stored_and_answered_200(
    receiver, simulator, name
) -> None:
    body = ODD_BODIES[name]
    unsigned = httpx.post(receiver.webhook_url, content=body, headers={IDEMPOTENCY_HEADER: "odd-unsigned"})
    assert unsigned.status_code == 401
    response = httpx.post(
        receiver.webhook_url,
        content=body,
        headers={SIGNATURE_HEADER: sign(simulator.secret, body), IDEMPOTENCY_HEADER: "odd-1"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] in ("unprocessed", "accepted")
    stored = receiver.deliveries()
    assert [d["idempotency_key"] for d in stored] == ["odd-1"]
    # Whatever got applied must still be readable through the API (no 5xx on the way out).
    listing = receiver.get("/jobs")
    assert listing.status_code == 200
    for job in listing.json()["jobs"]:
        assert receiver.get(f"/jobs/{job['id']}").status_code == 200
    # Redelivery is a duplicate, not a second row.
    again = httpx.post(
        receiver.webhook_url,
        content=body,
        headers={SIGNATURE_HEADER: sign(simulator.secret, body), IDEMPOTENCY_HEADER: "odd-1"},
    )
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert receiver.delivery_count() == 1


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"type":"video.generation.completed","data":{"id":"jobBig2","status":"completed",'
        b'"usage":{"cost":1' + b"0" * 400 + b"}}}",
    ],
    ids=["deeply nested", "cost beyond float"],
)
def test_signed_pathological_json_is_stored_without_a_server_error(receiver, simulator, body) -> None:
    response = httpx.post(
        receiver.webhook_url,
        content=body,
        headers={SIGNATURE_HEADER: sign(simulator.secret, body), IDEMPOTENCY_HEADER: "deep-1"},
    )
    assert response.status_code == 200
    assert receiver.delivery_count() == 1


# -- oversize, dripped ---------------------------------------------------------------------------


def test_a_slow_endless_chunked_body_is_cut_off_at_the_cap(receiver, simulator) -> None:
    cap = receiver.settings.max_body_bytes
    parts = urlsplit(receiver.url)
    chunk = b"x" * 16384
    sent = 0
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(
            b"POST /webhooks/openrouter HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n" + SIGNATURE_HEADER.encode() + b": t=1,v1=00\r\n\r\n"
        )
        sock.settimeout(0.005)
        try:
            while sent < 64 * cap:  # would be 64 MiB: the receiver must stop reading long before
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                try:
                    answer += sock.recv(65536)
                except TimeoutError:
                    continue
                if answer:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer:
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        except (ConnectionResetError, TimeoutError):
            pass
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert sent < 8 * cap, f"the receiver kept reading: {sent} bytes sent"
    assert receiver.delivery_count() == 0
    assert httpx.get(f"{receiver.url}/healthz").status_code == 200


# -- path tricks ---------------------------------------------------------------------------------

TRICKY_IDS = [
    "../../etc/passwd",
    "..",
    ".",
    "../receiver.db",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e",
    "a/b",
    "a\\..\\b",
    "/etc/passwd",
    "job\x00id",
    "job\nid",
    " jobSpace",
    "jöb",
    "\u202ejob",
    "ｊｏｂ",
    "x" * 201,
    "x" * 5000,
    "",
    "-leadingdash",
    "job.mp4",
]


def _files_under(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _s, fs in os.walk(root) for f in fs}


def test_webhook_events_with_path_tricks_in_the_job_id_never_touch_the_disk(
    tmp_path, receiver, simulator
) -> None:
    before = _files_under(str(tmp_path))
    for i, job_id in enumerate(TRICKY_IDS):
        body, headers = signed_event(
            simulator.secret,
            {
                "id": job_id,
                "status": "completed",
                "unsigned_urls": [f"{simulator.api_base}/videos/x/content"],
            },
            key=f"trick-{i}",
        )
        response = httpx.post(receiver.webhook_url, content=body, headers=headers)
        assert response.status_code == 200, (job_id, response.text)
        assert response.json()["outcome"] == "accepted", job_id  # stored as received
    receiver.applied()
    assert {d["state"] for d in receiver.deliveries()} == {"failed"}  # ...and refused by the applier
    assert receiver.get("/jobs").json()["jobs"] == []
    with receiver.db() as conn:
        assert conn.execute("SELECT count(*) FROM outputs").fetchone()[0] == 0
    time.sleep(0.3)  # a wrongly queued download would have started by now
    assert os.listdir(receiver.settings.videos_dir) == []
    added = _files_under(str(tmp_path)) - before
    assert all(path.startswith("data/receiver.db") for path in added), added


def test_query_api_path_tricks_answer_400_or_404_and_never_serve_another_file(receiver, simulator) -> None:
    api = OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base)
    with api:
        job = api.submit(
            "a real file to aim at", model="google/veo-3.1", duration=4, callback_url=receiver.webhook_url
        )
    receiver.wait_downloaded(job.id)
    jid = job.id.encode()
    targets = [
        b"/jobs/../../etc/passwd",
        b"/jobs/%2e%2e/%2e%2e/etc/passwd",
        b"/jobs/..%2f..%2fetc%2fpasswd",
        b"/jobs/%2E%2E%2Freceiver.db/content",
        b"/jobs/" + jid + b"/../" + jid + b"/content",
        b"/jobs/" + jid + b"/..%2f..%2freceiver.db/content",
        b"/jobs/..%5c..%5creceiver.db/content",
        b"/jobs/%252e%252e%252freceiver.db/content",
        b"/jobs/" + jid + b"%00/content",
        b"/jobs/job%00id",
        b"/jobs/" + b"x" * 10000,
        b"/jobs/" + b"x" * 10000 + b"/content",
        b"/jobs/%E2%80%AEjob/content",
        "/jobs/jöb".encode(),
        b"/jobs/%ff%fe",
        b"/jobs//etc/passwd/content",
        b"/jobs/./" + jid + b"/content",
        b"/jobs/" + jid + b"/content?index=../../receiver.db",
        b"/jobs/" + jid + b"/content?index=-1",
        b"/jobs/" + jid + b"/content?index=99999999999999999999999",
        b"/jobs/" + jid + b"/content?index=%00",
        b"/jobs/" + jid + b"/content/../../receiver.db",
        b"/jobs?cursor=../../etc/passwd",
        b"/jobs?since=%00&until=nan",
        b"/jobs?limit=1e3",
        b"/jobs?status=%00",
        *(
            b"/jobs?cursor=" + base64.urlsafe_b64encode(raw).rstrip(b"=")
            for raw in (
                b"5",
                b"null",
                b'{"a":1,"b":2}',
                b"[1,2,3]",
                b"[1" + b"0" * 400 + b',"x"]',
                b'[1,"\\ud800"]',
                b'["1","x"]',
                b"\xff\xfe",
            )
        ),
    ]
    for target in targets:
        status, raw = raw_get(receiver.url, target)
        assert status in (400, 404, 414, 431), (target[:80], raw[:300])
        assert b"SQLite format 3" not in raw and b"root:" not in raw and b"ftypisom" not in raw, target[:80]
    # The genuine URL still serves the file: the refusals were about the paths.
    status, raw = raw_get(receiver.url, b"/jobs/" + jid + b"/content")
    assert status == 200 and b"ftypisom" in raw


def test_registration_refuses_tricky_ids(receiver) -> None:
    for job_id in [*TRICKY_IDS, 12, None, ["a"], {"id": "a"}]:
        response = receiver.post("/jobs", json={"id": job_id})
        assert response.status_code == 400, job_id
    for bad in (
        {"id": "jobOk1", "model": 3},
        {"id": "jobOk1", "prompt": ["x"]},
        {"id": "jobOk1", "prompt": "\ud800"},
    ):
        response = httpx.post(
            f"{receiver.url}/jobs",
            content=json.dumps(bad).encode(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, (bad, response.text)
    assert receiver.get("/jobs").json()["jobs"] == []


# -- the bearer token ----------------------------------------------------------------------------


def test_the_query_api_accepts_only_the_exact_token(receiver, simulator) -> None:
    assert receiver.post("/jobs", json={"id": "jobSecret1", "model": "m"}).status_code == 201
    # RFC 7235: the scheme is case-insensitive and one or more spaces separate it from the token.
    for value in (f"bearer {API_TOKEN}", f"BEARER {API_TOKEN}", f"Bearer  {API_TOKEN}"):
        assert (
            httpx.get(f"{receiver.url}/jobs/jobSecret1", headers={"Authorization": value}).status_code == 200
        )
    wrong = [
        None,
        "",
        "Bearer",
        f"Bearer {API_TOKEN.upper()}",
        f"Bearer {API_TOKEN.title()}",
        f"Bearer {API_TOKEN},x",
        f"Bearer {API_TOKEN}x",
        f"Bearer {API_TOKEN[:-1]}",
        f"Token {API_TOKEN}",
        API_TOKEN,
        "Basic " + base64.b64encode(f"user:{API_TOKEN}".encode()).decode(),
    ]
    for value in wrong:
        headers = {} if value is None else {"Authorization": value}
        for method, path in (
            ("GET", "/jobs"),
            ("GET", "/jobs/jobSecret1"),
            ("GET", "/jobs/jobSecret1/content"),
            ("POST", "/jobs"),
            ("GET", "/metrics"),
        ):
            response = httpx.request(
                method,
                f"{receiver.url}{path}",
                headers=headers,
                json={"id": "jobSneaky1"} if method == "POST" else None,
            )
            assert response.status_code == 401, (value, method, path)
            assert b"jobSecret1" not in response.content
    assert httpx.get(f"{receiver.url}/jobs", params={"token": API_TOKEN}).status_code == 401
    assert httpx.get(f"{receiver.url}/jobs", headers={"Cookie": f"token={API_TOKEN}"}).status_code == 401
    # Paths that dodge the prefix check must not reach job data either.
    for target in (
        b"//jobs",
        b"//jobs/jobSecret1",
        b"/./jobs",
        b"/JOBS",
        b"/%6Aobs/jobSecret1",
        b"/jobs/",
        b"/jobs/jobSecret1/",
        b"/metrics/",
    ):
        status, raw = raw_get(receiver.url, target, token=None)
        assert status in (401, 404), (target, raw[:200])
        assert b'"model"' not in raw and b"receiver_deliveries" not in raw, target
    assert receiver.post("/jobs", json={"id": "jobSneaky1"}).status_code == 201  # the right token works
    assert receiver.job("jobSneaky1") is not None


# -- secrets in logs -----------------------------------------------------------------------------


def test_secrets_and_signatures_never_reach_the_log(tmp_path, simulator) -> None:
    old_secret, new_secret = simulator.secret, "whsec-rotated-secret-7f3a9c"
    settings = receiver_settings(
        str(tmp_path / "data"),
        simulator,
        fallback_after=0.3,
        webhook_secrets=(Secret(new_secret), Secret(old_secret)),
    )
    wrong_token = "wrong-token-5b1e8d2c44aa90f1"
    sent_signatures: list[str] = []
    proc = ReceiverProcess(settings).start()
    try:
        hook = f"{proc.url}/webhooks/openrouter"
        with OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api:
            ok = api.submit("logged job", model="google/veo-3.1", duration=4, callback_url=hook)
            httpx.post(
                f"{simulator.admin_url}/faults",
                json={
                    "content_errors": [{"status": 500, "count": 1}],
                    "poll_errors": [{"status": 503, "count": 3}],
                },
            )
            dropped = api.submit("[sim:webhook=drop] polled job", model="google/veo-3.1", duration=4)
        assert httpx.post(f"{proc.url}/jobs", headers=AUTH, json={"id": dropped.id}).status_code == 201
        body, headers = signed_event(old_secret, {"id": "jobLog1", "status": "failed", "error": "x"})
        sent_signatures.append(headers[SIGNATURE_HEADER])
        for tamper in (body + b" ", body.replace(b"failed", b"FAILED")):
            assert httpx.post(hook, content=tamper, headers=headers).status_code == 401
        stale = sign(new_secret, body, int(time.time()) - 4000)
        wrong = sign("whsec-attacker-secret", body)
        sent_signatures += [stale, wrong]
        for signature in (stale, wrong, f"t={int(time.time())},v1={new_secret}", f"garbage {old_secret}"):
            assert (
                httpx.post(hook, content=body, headers={**headers, SIGNATURE_HEADER: signature}).status_code
                == 401
            )
        assert httpx.post(hook, content=body, headers=headers).status_code == 200
        assert (
            httpx.post(
                hook, content=b"\xff not json", headers={SIGNATURE_HEADER: sign(new_secret, b"\xff not json")}
            ).status_code
            == 200
        )
        for token in (wrong_token, API_TOKEN.upper()):
            assert (
                httpx.get(f"{proc.url}/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 401
            )
        for job_id in (ok.id, dropped.id):
            wait_until(
                lambda j=job_id: (
                    lambda r: (
                        r.status_code == 200
                        and r.json()["outputs"]
                        and r.json()["outputs"][0]["state"] == "done"
                    )
                )(httpx.get(f"{proc.url}/jobs/{j}", headers=AUTH)),
                timeout=30,
                what=job_id,
            )
    finally:
        proc.stop()
    with open(proc.log_path, encoding="utf-8", errors="replace") as fh:
        log = fh.read()
    assert '"delivery.answered"' in log and '"rejected"' in log and "poll.answered" in log  # the right file
    secrets = {
        "api key": simulator.api_key,
        "old secret": old_secret,
        "new secret": new_secret,
        "api token": API_TOKEN,
        "wrong token": wrong_token,
        "upper-case token": API_TOKEN.upper(),
    }
    for signature in sent_signatures:
        secrets[f"signature {signature[:12]}"] = signature.split("v1=")[1]
    for name, value in secrets.items():
        assert value not in log, f"the {name} appears in the log"
    assert not HEX_SIGNATURE.search(log), HEX_SIGNATURE.search(log)


def test_settings_never_show_their_secrets() -> None:
    settings = Settings.from_env(
        {
            "OPENROUTER_API_KEY": "sk-or-v1-abcdef0123456789",
            "OPENROUTER_WEBHOOK_SECRET": "whsec-new-aaaa,whsec-old-bbbb",
            "RECEIVER_API_TOKEN": "token-0123456789abcdefXYZ",
        }
    )
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.webhook_secrets)):
        for secret in (
            "sk-or-v1-abcdef0123456789",
            "whsec-new-aaaa",
            "whsec-old-bbbb",
            "token-0123456789abcdefXYZ",
        ):
            assert secret not in text
    assert settings.secret_values() == ["whsec-new-aaaa", "whsec-old-bbbb"]
    from openrouter_video.receiver.settings import SettingsError

    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "OPENROUTER_API_KEY": "sk-x",
                "OPENROUTER_WEBHOOK_SECRET": "s",
                "RECEIVER_API_TOKEN": "short-secret",
            }
        )
    assert "short-secret" not in str(info.value)
