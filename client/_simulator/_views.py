"""JSON shapes: the poll response, the webhook event, and the admin view of a job."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .._types import COMPLETED, PENDING
from ._config import SimulatorConfig
from ._jobs import Job
from ._urls import UrlSigner, polling_url, signed_urls, unsigned_urls


def _usage(job: Job) -> dict[str, Any]:
    return {"cost": job.cost, "is_byok": False}


def poll_body(job: Job, status: str, config: SimulatorConfig, signer: UrlSigner) -> dict[str, Any]:
    """`GET /videos/{id}`: generation_id after pending; error when unsuccessful; outputs when completed."""
    body: dict[str, Any] = {
        "id": job.id,
        "polling_url": polling_url(job, config.polling_url_style),
        "status": status,
    }
    if status != PENDING:
        body["generation_id"] = job.generation_id
    body["model"] = job.model
    if job.error is not None and status == job.outcome:
        body["error"] = job.error
    if status == COMPLETED:
        body["unsigned_urls"] = unsigned_urls(job)
        body["urls"] = signed_urls(job, signer)
        body["expires_at"] = job.expires_at
        body["usage"] = _usage(job)
    return body


def iso_ms(timestamp: float) -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, like `2026-08-25T10:00:00.123Z`."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def webhook_body(job: Job, config: SimulatorConfig, signer: UrlSigner) -> bytes:
    """The compact JSON event for the job's terminal status, key order as in real captures."""
    data: dict[str, Any]
    if job.outcome == COMPLETED:
        data = {
            "generation_id": job.generation_id,
            "id": job.id,
            "model": job.model,
            "status": job.outcome,
            "unsigned_urls": unsigned_urls(job),
            "usage": _usage(job),
        }
        if config.webhook_include_signed_urls:
            data["urls"] = signed_urls(job, signer)
            data["expires_at"] = job.expires_at
    else:
        data = {
            "id": job.id,
            "status": job.outcome,
            "generation_id": job.generation_id,
            "model": job.model,
            "error": job.error,
        }
    event = {"type": f"video.generation.{job.outcome}", "created_at": iso_ms(job.finished_at), "data": data}
    return json.dumps(event, separators=(",", ":")).encode()


def admin_view(job: Job, config: SimulatorConfig, hashes: list[str | None]) -> dict[str, Any]:
    """Everything the simulator knows about a job, for tests."""
    return {
        "id": job.id,
        "status": job.status(),
        "outcome": job.outcome,
        "model": job.model,
        "generation_id": job.generation_id,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "expires_at": job.expires_at,
        "pending": job.pending,
        "in_progress": job.in_progress,
        "webhook_url": job.webhook_url,
        "webhook": job.webhook,
        "copies": job.copies,
        "delay": job.delay,
        "gone": job.is_gone(config.faults),
        "rate": job.content_rate(config.faults),
        "cost": job.cost,
        "overrides": job.overrides,
        "request": job.body,
        "video": job.video.to_dict(),
        "outputs": [{"index": i, "size": job.bytes, "sha256": hashes[i]} for i in range(job.outputs)],
    }
