"""OpenRouter's webhook signature scheme: sign and verify.

Header `X-OpenRouter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, computed over the bytes
`"<t>," + raw body` with the workspace signing secret. Verification is a pure function of the
secrets, the raw body, the headers and the clock; every way it can fail raises one
`WebhookVerificationError` whose `.reason` says which.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import WebhookPayloadError, WebhookVerificationError
from ._types import VideoJob

SIGNATURE_HEADER = "X-OpenRouter-Signature"
IDEMPOTENCY_HEADER = "X-OpenRouter-Idempotency-Key"
# Where the receiver takes webhooks, under its public URL (the callback URL the CLI sends).
WEBHOOK_PATH = "/webhooks/openrouter"
DEFAULT_TOLERANCE = 300
EVENT_PREFIX = "video.generation."

# A timestamp is digits only (no sign, no exponent, no "nan"); 15 digits is ~31 million years.
_MAX_TIMESTAMP_DIGITS = 15

Secrets = str | bytes | Iterable[str | bytes]


def sign(secret: str | bytes, body: bytes | str, timestamp: int | None = None) -> str:
    """Return the `X-OpenRouter-Signature` value for `body` at `timestamp` (default: now)."""
    key = _key(secret)
    if not key:
        raise WebhookVerificationError("empty_secret", "the signing secret is empty")
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_digest(key, str(t), _bytes(body))}"


def verify_signature(
    secrets: Secrets,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> int:
    """Check the signature and freshness of a delivery; return its timestamp.

    Accepts several configured secrets (rotation) and several `v1=` values in the header: any
    matching pair verifies. Timestamps more than `tolerance` seconds in the past or the future fail.
    """
    keys = _keys(secrets)
    raw = _header(headers, SIGNATURE_HEADER)
    if raw is None or not raw.strip():
        raise WebhookVerificationError("missing", f"no {SIGNATURE_HEADER} header")
    t_text, candidates = _parse_signature(raw)
    timestamp = int(t_text)
    current = time.time() if now is None else now
    if current - timestamp > tolerance:
        raise WebhookVerificationError("too_old", f"timestamp is more than {tolerance}s old")
    if timestamp - current > tolerance:
        raise WebhookVerificationError("too_new", f"timestamp is more than {tolerance}s in the future")
    body_bytes = _bytes(body)
    for key in keys:
        expected = _digest(key, t_text, body_bytes)
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return timestamp
    raise WebhookVerificationError("mismatch", "no signature matches the body and a configured secret")


@dataclass(frozen=True)
class WebhookEvent:
    """A parsed `video.generation.*` webhook event."""

    type: str
    created_at: str | None
    job: VideoJob
    data: dict[str, Any]

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def status(self) -> str:
        return self.job.status


def parse_event(body: bytes | str) -> WebhookEvent:
    """Parse a (verified) webhook body into a `WebhookEvent`, or raise `WebhookPayloadError`."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise WebhookPayloadError(
            f"webhook body is not JSON: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError("webhook body is not a JSON object")
    event_type, data = payload.get("type"), payload.get("data")
    if not isinstance(event_type, str) or not event_type.startswith(EVENT_PREFIX):
        raise WebhookPayloadError(f"unknown webhook event type {event_type!r}")
    if not isinstance(data, dict):
        raise WebhookPayloadError("webhook event has no 'data' object")
    if "status" not in data:
        # The type names the status even if the data omits it.
        data = {**data, "status": event_type[len(EVENT_PREFIX) :]}
    try:
        job = VideoJob.from_api(data)
    except (ValueError, OverflowError, TypeError) as exc:
        raise WebhookPayloadError(f"webhook event data is not a job: {exc}") from None
    created_at = payload.get("created_at")
    return WebhookEvent(
        type=event_type, created_at=created_at if isinstance(created_at, str) else None, job=job, data=data
    )


def verify(
    secrets: Secrets,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> WebhookEvent:
    """Verify a delivery and return the parsed event (`verify_signature` then `parse_event`)."""
    verify_signature(secrets, body, headers, now=now, tolerance=tolerance)
    return parse_event(body)


def idempotency_key(headers: Mapping[str, str], event: WebhookEvent | None = None) -> str | None:
    """The delivery's dedup key: the header, else `<job id>-<status>` from the event."""
    key = _header(headers, IDEMPOTENCY_HEADER)
    if key and key.strip():
        return key.strip()
    if event is not None:
        return f"{event.job_id}-{event.status}"
    return None


# -- internals ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _keyed(key: bytes) -> hmac.HMAC:
    # Keying HMAC costs about as much as hashing a small body; copying a keyed one is cheap.
    return hmac.new(key, digestmod=hashlib.sha256)


def _digest(key: bytes, t_text: str, body: bytes) -> str:
    mac = _keyed(key).copy()
    mac.update(t_text.encode("ascii"))
    mac.update(b",")
    mac.update(body)
    return mac.hexdigest()


# The shape OpenRouter sends; anything else (spaces, several v1=, upper case) takes the general parser.
_CANONICAL = re.compile(rf"t=([0-9]{{1,{_MAX_TIMESTAMP_DIGITS}}}),v1=([0-9a-f]{{64}})")


def _parse_signature(raw: str) -> tuple[str, list[str]]:
    canonical = _CANONICAL.fullmatch(raw)
    if canonical is not None:
        return canonical[1], [canonical[2]]
    return _parse_signature_parts(raw)


def _parse_signature_parts(raw: str) -> tuple[str, list[str]]:
    t_text: str | None = None
    candidates: list[str] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise WebhookVerificationError("malformed", "signature header part without '='")
        name, value = name.strip(), value.strip()
        if name == "t":
            if t_text is not None:
                raise WebhookVerificationError("malformed", "signature header has more than one timestamp")
            if not (value.isascii() and value.isdigit()) or len(value) > _MAX_TIMESTAMP_DIGITS:
                raise WebhookVerificationError(
                    "malformed", "signature timestamp is not a whole number of seconds"
                )
            t_text = value
        elif name == "v1":
            # Non-ASCII can never match a hex digest (and compare_digest refuses non-ASCII str).
            candidates.append(value.lower() if value.isascii() else "")
    if t_text is None:
        raise WebhookVerificationError("malformed", "signature header has no timestamp")
    if not candidates:
        raise WebhookVerificationError("no_signature", "signature header has no v1 signature")
    # The digest covers the timestamp text exactly as sent (OpenRouter signs what it sends).
    return t_text, candidates


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = headers.get(lowered)
        if value is None and isinstance(headers, dict):
            value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _keys(secrets: Secrets) -> list[bytes]:
    items = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    keys = [_key(s) for s in items]
    if not keys or not all(keys):
        raise WebhookVerificationError("empty_secret", "no webhook secret configured (or one is empty)")
    return keys


def _bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)
