"""Schema fuzzing: Schemathesis drives every operation of `receiver/openapi.py` against a live receiver.

The receiver runs under real uvicorn on loopback, with a simulator behind it and one downloaded
job, so content and Range requests hit a real file. Every response must not be a 5xx and must
match the document: status code, content type and body schema. Webhook bodies are mostly signed
(so they reach the store); the rest keep whatever signature header was generated.
"""

from __future__ import annotations

import hashlib
import json
import tempfile

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from receiver_support import AUTH, receiver_settings, running_receiver, signed_event
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from support import running_simulator

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, OpenRouterVideo, sign
from openrouter_video.receiver.openapi import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=40)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live():
    with (
        tempfile.TemporaryDirectory(prefix="schema-fuzz-") as data_dir,
        running_simulator() as sim,
        running_receiver(receiver_settings(data_dir, sim)) as rx,
    ):
        with OpenRouterVideo(api_key=sim.api_key, base_url=sim.api_base) as api:
            job = api.submit("fuzz target", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        rx.wait_downloaded(job.id)
        for status in ("failed", "in_progress"):
            body, headers = signed_event(sim.secret, {"id": f"jobFuzz{status}", "status": status})
            httpx.post(rx.webhook_url, content=body, headers=headers).raise_for_status()
        yield rx, sim


def _header_bytes(headers: dict | None) -> dict[str, bytes]:
    out = {}
    for name, value in (headers or {}).items():
        try:
            out[name] = str(value).encode("latin-1")
        except UnicodeEncodeError:
            out[name] = str(value).encode("utf-8")
    return out


def _send_webhook(case, rx, secret: str) -> httpx.Response:
    body = (
        b""
        if case.body is None or not isinstance(case.body, (dict, list, str, int, float, bool))
        else json.dumps(case.body).encode()
    )
    headers = _header_bytes(case.headers)
    headers["content-type"] = b"application/json"
    if int(hashlib.sha256(body).hexdigest(), 16) % 4:  # three in four are signed for real
        headers[SIGNATURE_HEADER] = sign(secret, body).encode()
        # One key per distinct body: the generated keys are so few that nearly all would be duplicates.
        headers[IDEMPOTENCY_HEADER] = b"fuzz-" + hashlib.sha256(body).hexdigest()[:32].encode()
    return httpx.post(rx.webhook_url, content=body, headers=headers, timeout=30)


def _open_events(case, rx) -> httpx.Response:
    """GET /events never ends by itself: its head and first event are what is checked (a refusal is
    read whole)."""
    headers = {**_header_bytes(case.headers), **{k: v.encode() for k, v in AUTH.items()}}
    with httpx.stream(
        "GET", f"{rx.url}/events", params=case.query or None, headers=headers, timeout=30
    ) as streamed:
        if streamed.status_code != 200:
            content = streamed.read()
        else:
            content = b""
            for chunk in streamed.iter_bytes():
                content += chunk
                if b"event: " in content and content.endswith(b"\n\n"):
                    break
    response = httpx.Response(
        streamed.status_code, headers=streamed.headers, content=content, request=streamed.request
    )
    response.elapsed = streamed.elapsed  # known once the stream is closed
    return response


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_and_never_fails_with_a_5xx(case, live) -> None:
    rx, sim = live
    if case.path == "/webhooks/openrouter":
        response = _send_webhook(case, rx, sim.secret)
    elif case.path == "/events":
        response = _open_events(case, rx)
    else:
        response = case.call(base_url=rx.url, headers=AUTH, timeout=30)
    case.validate_response(response, checks=CHECKS)


def test_the_document_is_served_and_describes_every_route(live) -> None:
    rx, _sim = live
    served = httpx.get(f"{rx.url}/openapi.json")  # no token needed: the shape of the API is not a secret
    assert served.status_code == 200
    assert served.json() == openapi_document()
    paths = set(served.json()["paths"])
    assert paths == {
        "/webhooks/openrouter",
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/content",
        "/submissions/{ref}",
        "/usage",
        "/deliveries",
        "/deliveries/reprocess",
        "/notifications",
        "/notifications/{notification_id}/retry",
        "/events",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
    # The fixture's records conform too (not only what the fuzzer happened to create).
    for job in rx.get("/jobs", params={"limit": 500}).json()["jobs"]:
        response = rx.get(f"/jobs/{job['id']}")
        schema["/jobs/{job_id}"]["GET"].validate_response(response)
