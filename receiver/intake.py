"""`POST /webhooks/openrouter`: verify, deduplicate, commit durably, answer; the applier does the rest.

Order matters: the body is read under a hard cap counted on the bytes received; the signature and
timestamp are checked before anything touches the database (a forged flood costs one HMAC each);
the delivery is committed to the store before any 2xx; a store that cannot commit answers 503 so
OpenRouter redelivers. Parsing the event and moving its job along happen after the answer, in
`openrouter_video.receiver.applier`, from the stored row: the answer waits for the disk and nothing else.

This is the receiver's hot path, so it is a pure ASGI endpoint: one pass over the headers,
precomputed answers, no per-request framework objects. Everything else goes through Starlette.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from urllib.parse import parse_qs

import structlog
from starlette.types import Receive, Scope, Send

from openrouter_video import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WebhookPayloadError,
    WebhookVerificationError,
    parse_event,
    verify_signature,
)

from .contract import DeliveryAnswer, encode
from .domain.events import SELFTEST_HEADER, selftest_job_of, storable_key
from .domain.model import Delivery
from .domain.submissions import SUBMISSION_PARAM, is_submission_id
from .errors import INTERNAL_ERROR, error_body
from .middleware import REQUEST_ID_PATTERN, new_request_id
from .state import ReceiverState
from .storage.base import StoreUnavailable

log = structlog.get_logger("receiver.intake")

_SIGNATURE = SIGNATURE_HEADER.lower().encode()
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower().encode()
_SELFTEST = SELFTEST_HEADER.lower().encode()
_KEPT = {
    b"content-type": "content-type",
    b"user-agent": "user-agent",
    _IDEMPOTENCY: IDEMPOTENCY_HEADER.lower(),
    _SIGNATURE: SIGNATURE_HEADER.lower(),
    _SELFTEST: SELFTEST_HEADER.lower(),
}
_JSON = [(b"content-type", b"application/json")]
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN.encode())  # matched on raw header bytes here


def _answer(status: int, payload: dict) -> tuple[int, bytes]:
    return status, json.dumps(payload, separators=(",", ":")).encode()


ACCEPTED = (200, encode(DeliveryAnswer(True, "accepted")))
DUPLICATE = (200, encode(DeliveryAnswer(True, "duplicate")))
SELFTEST = (200, encode(DeliveryAnswer(True, "test")))
CRASHED = _answer(500, error_body(500, INTERNAL_ERROR))
UNAVAILABLE = _answer(503, error_body(503, "the delivery could not be stored; please retry"))


class _RejectionLog:
    """At most one log line per rejection reason per second, carrying how many were not logged.

    Every rejection is still counted in the metrics; the sampling keeps a forged flood from
    turning into a log flood that fills the disk.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, reason: str, **fields: object) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -self.interval) < self.interval:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = now
        log.warning(
            "delivery.answered",
            outcome="rejected",
            reason=reason,
            similar_not_logged=self._suppressed.pop(reason, 0),
            **fields,
        )


_log_rejection = _RejectionLog()
_REJECTIONS: dict[tuple[str, str], tuple[int, bytes]] = {}


async def _respond(send: Send, answer: tuple[int, bytes], request_id: str) -> None:
    status, body = answer
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *_JSON,
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_capped(receive: Receive, cap: int) -> bytes | None:
    """The raw body, or None once more than `cap` bytes arrived (Content-Length can lie or be absent)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _submission_ref(query: bytes) -> str | None:
    """The submission a callback URL names (`?submission=sub_...`), if well-formed. The query string is
    not covered by the signature: the reference only links an undecided submission to the signed
    event's job (see receiver.domain.submissions.plan_link); it grants nothing."""
    if not query:
        return None
    values = parse_qs(query.decode("latin-1")).get(SUBMISSION_PARAM) or []
    return values[0] if len(values) == 1 and is_submission_id(values[0]) else None


async def receive_webhook(scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    s: ReceiverState = scope["state"]["receiver"]
    settings, metrics = s.settings, s.metrics
    request_id = ""
    client = scope["client"][0] if scope.get("client") else None
    signature = key = None
    declared = -1
    selftest = False
    for name, value in scope["headers"]:
        if name == _SIGNATURE:
            signature = value.decode("latin-1")
        elif name == _IDEMPOTENCY:
            key = value.decode("latin-1").strip()
        elif name == b"content-length" and value.isdigit():
            declared = int(value)
        elif name == _SELFTEST:
            selftest = True
        elif name == b"x-request-id" and _REQUEST_ID.match(value):
            request_id = value.decode("ascii")  # the proxy's id, so its log and ours line up

    request_id = request_id or new_request_id()
    body = (
        None if declared > settings.max_body_bytes else await _read_capped(receive, settings.max_body_bytes)
    )
    if body is None:
        metrics.deliveries["too_large"].inc()
        log.warning(
            "delivery.answered",
            outcome="too_large",
            limit=settings.max_body_bytes,
            client=client,
            request_id=request_id,
        )
        await _respond(
            send,
            _answer(413, error_body(413, f"body larger than {settings.max_body_bytes} bytes")),
            request_id,
        )
        return
    try:
        signed_at = verify_signature(
            s.secrets,
            body,
            {SIGNATURE_HEADER: signature} if signature else {},
            tolerance=settings.webhook_tolerance,
        )
    except WebhookVerificationError as exc:
        metrics.deliveries["rejected"].inc()
        metrics.inc("receiver_verification_failures_total", reason=exc.reason)
        _log_rejection(exc.reason, body_bytes=len(body), client=client, request_id=request_id)
        answer = _REJECTIONS.get((exc.reason, exc.message))
        if answer is None:
            answer = _REJECTIONS.setdefault(
                (exc.reason, exc.message),
                _answer(401, error_body(401, exc.message, reason=exc.reason)),
            )
        await _respond(send, answer, request_id)
        return
    selftest_job = selftest_job_of(body) if selftest else None  # only after the signature was verified
    if not key:  # OpenRouter sends one; without it, redeliveries of the same event still match
        try:
            event = parse_event(body)
            key = f"{event.job_id}-{event.status}"
        except WebhookPayloadError:
            key = f"sha256-{hashlib.sha256(body).hexdigest()}"
    delivery = Delivery(
        idempotency_key=storable_key(key),
        body=body,
        headers={_KEPT[name]: value.decode("latin-1") for name, value in scope["headers"] if name in _KEPT},
        received_at=time.time(),
        signed_at=signed_at,
        remote_addr=client,
        # The same signed request resent under a fresh idempotency key (a replay) is a duplicate. 16 bytes
        # of sha256 (2^-64 odds of any collision in 4 billion deliveries); a short blob keeps the index
        # cheap (benchmarked: a 75-character text key cost ~20 us per delivery, this one ~0).
        replay_key=hashlib.sha256(b"%d." % signed_at + body).digest()[:16],
        selftest_job=selftest_job,
        submission_id=_submission_ref(scope.get("query_string") or b""),
    )
    try:
        recorded = await s.stores.deliveries.record(delivery)
    except StoreUnavailable as exc:
        metrics.deliveries["store_unavailable"].inc()
        log.error(
            "delivery.answered",
            outcome="store_unavailable",
            error=str(exc),
            idempotency_key=delivery.idempotency_key,
            client=client,
            request_id=request_id,
        )
        await _respond(send, UNAVAILABLE, request_id)
        return
    answered_ms = round((time.perf_counter() - started) * 1000, 2)
    if recorded.duplicate:
        metrics.deliveries["duplicate"].inc()
        log.info(
            "delivery.answered",
            outcome="duplicate",
            idempotency_key=delivery.idempotency_key,
            client=client,
            request_id=request_id,
            answered_ms=answered_ms,
        )
        await _respond(send, DUPLICATE, request_id)
        return
    if selftest_job is not None:
        metrics.deliveries["test"].inc()
        log.info(
            "delivery.answered",
            outcome="test",
            job_id=selftest_job,
            client=client,
            request_id=request_id,
            answered_ms=answered_ms,
        )
        await _respond(send, SELFTEST, request_id)
        return
    # Stored: the answer can go. The applier moves the job along and writes the log line.
    metrics.deliveries["accepted"].inc()
    metrics.webhook_stored.observe(max(0.0, time.time() - signed_at))
    assert recorded.delivery_id is not None  # a stored (not duplicate) delivery has its row id
    s.applier.received(recorded.delivery_id, request_id=request_id, client=client, answered_ms=answered_ms)
    await _respond(send, ACCEPTED, request_id)


class WebhookFastPath:
    """Pure ASGI: webhook POSTs go straight to `receive_webhook`, everything else to the Starlette app."""

    def __init__(self, app, *, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "POST":
            started = time.perf_counter()
            try:
                await receive_webhook(scope, receive, send)
            except Exception:
                # What Starlette's error middleware does for the other routes: log it, answer 500 (if
                # the answer has not started; then there is nothing left to tell the sender).
                log.exception("request.crashed", path=self.path)
                with contextlib.suppress(Exception):
                    await _respond(send, CRASHED, "")
            finally:
                s = scope.get("state", {}).get("receiver")
                if s is not None:
                    s.metrics.requests[self.path].observe(time.perf_counter() - started)
        else:
            await self.app(scope, receive, send)
