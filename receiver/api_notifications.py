"""Notifications to apps over HTTP: the notify_url a job names (checked here for POST /jobs), and the
outbox for operators: `GET /notifications` (keyset-paged like /deliveries) and
`POST /notifications/{id}/retry` (a dead or delivered one goes back to pending, due now, attempts
reset; its `webhook-id` stays, so an app that saw it before can tell)."""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import Response

from . import contract
from .contract import MAX_LIMIT
from .contract_notify import Notification, NotificationList, RetryNotifications, present_notification
from .domain.notifications import NOTIFICATION_STATES
from .errors import error_response
from .notify_url import RefusedUrl, check_notify_url, check_resolved
from .settings import Settings
from .state import state_of

log = structlog.get_logger("receiver.api")


class NotifyUrlRefused(Exception):
    """A notify_url the receiver will not accept: `status` (400, or 503 with no signing secret)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def accept_notify_url(settings: Settings, value: object, *, owner: str | None) -> str | None:
    """A job's `notify_url` (None: none given), once the receiver can and may POST there. `owner`:
    the named token asking (its notifications are signed with its own secret), None for the admin
    token (signed with RECEIVER_NOTIFY_SECRET, which must then be set)."""
    if value is None:
        return None
    try:
        url = check_notify_url(value, allow_private=settings.notify_allow_private)
    except RefusedUrl as exc:
        raise NotifyUrlRefused(400, str(exc)) from None
    if owner is None and settings.notify_secret is None:  # before any DNS lookup: nothing could be signed
        raise NotifyUrlRefused(
            503,
            "notify_url needs RECEIVER_NOTIFY_SECRET on the receiver (notifications are signed); "
            "ask its admin to set it, nothing was done",
        )
    try:
        await check_resolved(url, allow_private=settings.notify_allow_private)
    except RefusedUrl as exc:
        raise NotifyUrlRefused(400, str(exc)) from None
    return url


async def list_notifications(request: Request) -> Response:
    q = request.query_params
    state = q.get("state") or None
    if state is not None and state not in NOTIFICATION_STATES:
        return error_response(400, f"state must be one of {', '.join(NOTIFICATION_STATES)}")
    raw_limit = q.get("limit", "50")
    if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_LIMIT):
        return error_response(400, f"limit must be a whole number between 1 and {MAX_LIMIT}")
    try:
        page = await state_of(request).stores.notifications.page(
            state=state, job_id=q.get("job_id") or None, cursor=q.get("cursor") or None, limit=int(raw_limit)
        )
    except ValueError:
        return error_response(400, "cursor is not one this API returned")
    shown = [contract.shape(present_notification(r), Notification) for r in page.items]
    return _json(NotificationList(shown, page.cursor))


async def retry_notification(request: Request) -> Response:
    notification_id = request.path_params["notification_id"]
    outbox = state_of(request).stores.notifications
    if await outbox.get(notification_id) is None:
        return error_response(404, f"no notification {notification_id[:100]!r}")
    retried = await outbox.retry([notification_id])
    if not retried:
        return error_response(409, f"notification {notification_id} is being sent right now; try again")
    record = await outbox.get(notification_id)
    if record is None:  # its job was deleted meanwhile
        return error_response(404, f"no notification {notification_id[:100]!r}")
    log.info("notification.retried", id=notification_id, job_id=record.job_id)
    shown = contract.shape(present_notification(record), Notification)
    return _json(RetryNotifications(retried, shown))


def _json(value: object, status: int = 200) -> Response:
    return Response(contract.encode(value), status_code=status, media_type="application/json")
