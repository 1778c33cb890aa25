"""`POST /webhooks/openrouter`: verify, deduplicate, commit durably, apply, then answer.

Order matters: the body is read under a hard cap; the signature and timestamp are checked before
anything touches the database (a forged flood costs one HMAC each); the delivery is committed to
SQLite before any 2xx; a store that cannot commit answers 503 so OpenRouter redelivers.
"""

from __future__ import annotations

import hashlib
import time

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from client import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WebhookPayloadError,
    WebhookVerificationError,
    idempotency_key,
    parse_event,
    verify_signature,
)

from .records import Delivery
from .state import state_of
from .store import StoreUnavailable

log = structlog.get_logger("receiver.intake")

_KEPT_HEADERS = ("content-type", "user-agent", IDEMPOTENCY_HEADER.lower(), SIGNATURE_HEADER.lower())


class BodyTooLarge(Exception):
    pass


async def read_capped(request: Request, cap: int) -> bytes:
    """The raw body, counted on the bytes actually received (Content-Length can lie or be absent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message, **extra}}, status_code=status)


async def receive_webhook(request: Request) -> Response:
    started = time.perf_counter()
    s = state_of(request)
    settings, metrics = s.settings, s.metrics
    try:
        body = await read_capped(request, settings.max_body_bytes)
    except BodyTooLarge:
        metrics.inc("receiver_deliveries_total", outcome="too_large")
        log.warning("webhook.delivery", outcome="too_large", limit=settings.max_body_bytes)
        return _error(413, f"body larger than {settings.max_body_bytes} bytes")
    try:
        signed_at = verify_signature(s.secrets, body, request.headers, tolerance=settings.webhook_tolerance)
    except WebhookVerificationError as exc:
        metrics.inc("receiver_deliveries_total", outcome="rejected")
        metrics.inc("receiver_verification_failures_total", reason=exc.reason)
        log.warning("webhook.delivery", outcome="rejected", reason=exc.reason, body_bytes=len(body),
                    client=request.client.host if request.client else None)
        return _error(401, exc.message, reason=exc.reason)
    try:
        event, payload_error = parse_event(body), None
    except WebhookPayloadError as exc:
        event, payload_error = None, exc.message
    key = idempotency_key(request.headers, event) or f"sha256-{hashlib.sha256(body).hexdigest()}"
    delivery = Delivery(
        idempotency_key=key[:200],
        body=body,
        headers={h: request.headers[h] for h in _KEPT_HEADERS if h in request.headers},
        received_at=time.time(),
        signed_at=signed_at,
        remote_addr=request.client.host if request.client else None,
    )
    log_fields = {"idempotency_key": delivery.idempotency_key, "job_id": event.job_id if event else None,
                  "status": event.status if event else None, "client": delivery.remote_addr}
    try:
        outcome = await s.store.record_delivery(delivery, event, payload_error)
    except StoreUnavailable as exc:
        metrics.inc("receiver_deliveries_total", outcome="store_unavailable")
        log.error("webhook.delivery", outcome="store_unavailable", error=str(exc), **log_fields)
        return _error(503, "the delivery could not be stored; please retry")
    if outcome.duplicate:
        result = "duplicate"
    elif not outcome.processed:
        result = "unprocessed"
    else:
        result = "accepted"
    metrics.inc("receiver_deliveries_total", outcome=result)
    if outcome.outputs_queued:
        s.fetcher.wake()
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    if result == "unprocessed":
        log.error("webhook.delivery", outcome=result, error=outcome.error, delivery_id=outcome.delivery_id,
                  duration_ms=duration_ms, **log_fields)
    else:
        log.info("webhook.delivery", outcome=result, decision=outcome.decision, duration_ms=duration_ms,
                 **log_fields)
    return JSONResponse({"received": True, "outcome": result})
