"""The HTTP shapes of signed notifications to apps (part of the contract, `receiver.contract`): what
an app receives, and what `GET /notifications` and `POST /notifications/{id}/retry` answer."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import msgspec

from .contract import Job, Time, iso, present_job
from .domain.model import JobRecord
from .domain.notifications import NOTIFICATION_STATES, NotificationRecord

NotificationId = Annotated[str, msgspec.Meta(pattern="^msg_[0-9a-f]{24}$")]


class NotificationData(Job, kw_only=True):
    """The job's record as `GET /jobs/{id}` shows it, each done output's `url` absolute (built from
    RECEIVER_PUBLIC_URL; fetched with a bearer token), and those URLs again in `content_urls`."""

    content_urls: list[str]


class NotificationEnvelope(msgspec.Struct):
    """The body POSTed to an app (Standard Webhooks: signed with `webhook-id`, `webhook-timestamp`,
    `webhook-signature`): `type` is `video.completed`, `video.failed`, `video.cancelled` or
    `video.expired`; a completed job is told once every output is stored (or given up: see each
    output's `state`)."""

    type: Annotated[str, msgspec.Meta(examples=["video.completed"])]
    timestamp: Time
    data: NotificationData


class Notification(msgspec.Struct, kw_only=True):
    """One notification of a job's end (`id` is its `webhook-id`, the same on every attempt)."""

    id: NotificationId
    job_id: str
    event: str
    url: str
    owner: str | None  # the token whose job it is (null: the admin's, or no token)
    state: Literal[NOTIFICATION_STATES]  # type: ignore[valid-type]
    attempts: Annotated[int, msgspec.Meta(ge=0)]
    next_attempt_at: Time | None  # pending only
    last_status: int | None  # the app's last HTTP status (null: no answer)
    last_error: str | None
    created_at: Time
    delivered_at: Time | None


class NotificationList(msgspec.Struct):
    notifications: list[Notification]
    next_cursor: str | None


class RetryNotifications(msgspec.Struct):
    """`POST /notifications/{id}/retry`: the notification, back to pending and due now."""

    retried: list[NotificationId]
    notification: Notification


def present_notification(record: NotificationRecord) -> dict[str, Any]:
    row = dataclasses.asdict(record)
    for name in ("created_at", "delivered_at"):
        row[name] = iso(row[name])
    row["next_attempt_at"] = iso(record.next_attempt_at) if record.state == "pending" else None
    return row


def notification_data(job: JobRecord, public_url: str | None) -> dict[str, Any]:
    """The job as an app is told it: content URLs absolute when the receiver knows its public URL."""
    base = (public_url or "").rstrip("/")
    shown = present_job(job)
    for output in shown["outputs"]:
        if output["url"] is not None:
            output["url"] = base + output["url"]
    shown["content_urls"] = [o["url"] for o in shown["outputs"] if o["url"] is not None]
    return shown
