"""What a stored webhook body is: an event to apply to its job, a self-test, or unusable (and why).

Pure: the applier of any backend reads a pending delivery's body, asks `plan_delivery`, and stores
the answer (the delivery's state and columns, and the job change `receiver.domain.plan` decides).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from openrouter_video import VideoJob, WebhookPayloadError, is_valid_job_id, parse_event

# The job ids of `openrouter-video webhook test`: a verified delivery of one is kept as a test and
# never applied (it must not create a job record).
SELFTEST_PREFIX = "selftest-"
# Sent by `webhook test`; honoured only once the delivery's signature is verified.
SELFTEST_HEADER = "X-Receiver-Selftest"
# Idempotency keys are stored whole up to this length; a longer one is stored as a hash of all of
# it, never cut (two keys sharing a prefix must not collide).
MAX_STORED_KEY = 200


def storable_key(key: str) -> str:
    """The idempotency key as stored: whole, or `sha256:<hex>` of the whole key when it is long."""
    if len(key) <= MAX_STORED_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def is_selftest(job_id: str | None) -> bool:
    return bool(job_id) and str(job_id).startswith(SELFTEST_PREFIX)


def storable(text: str | None) -> str | None:
    """Text a database can store: JSON escapes allow lone surrogates (\\ud800) that UTF-8 cannot encode."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def storable_job(job: VideoJob) -> VideoJob:
    """The job with its stored text fields made storable (its `raw` is stored as escaped JSON)."""
    fields: dict[str, Any] = {
        name: getattr(job, name) for name in ("id", "status", "model", "error", "generation_id")
    }
    clean: dict[str, Any] = {name: storable(value) for name, value in fields.items()}
    return job if clean == fields else dataclasses.replace(job, **clean)


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """What a stored delivery becomes. `job`: the event's job to apply (state `applied` only)."""

    state: Literal["applied", "failed", "test"]
    job_id: str | None
    event_type: str | None
    status: str | None
    error: str | None = None
    job: VideoJob | None = None


def plan_delivery(body: bytes) -> DeliveryPlan:
    """Parse a stored (verified) body: an event to apply, a self-test (never a job), or failed with why."""
    try:
        event = parse_event(body)
    except WebhookPayloadError as exc:
        return DeliveryPlan("failed", None, None, None, error=exc.message)
    job_id, status, event_type = storable(event.job_id), storable(event.status), storable(event.type)
    if not is_valid_job_id(event.job_id):
        error = f"job id {event.job_id[:80]!r} is not a valid job id"
        return DeliveryPlan("failed", job_id, event_type, status, error=error)
    if is_selftest(job_id):
        # A self-test sent without its header (an older CLI): still never a job.
        return DeliveryPlan("test", job_id, event_type, status)
    return DeliveryPlan("applied", job_id, event_type, status, job=storable_job(event.job))


def selftest_job_of(body: bytes) -> str | None:
    """The synthetic job id of a `webhook test` body, or None if it is not one (a real event sent with
    the self-test header is applied as usual: the header alone never drops an event)."""
    try:
        job_id = parse_event(body).job_id
    except WebhookPayloadError:
        return None
    return job_id if is_selftest(job_id) else None
