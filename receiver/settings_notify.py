"""The settings of signed notifications to apps, read and checked (part of `receiver.settings`).

- RECEIVER_NOTIFY_URL: where the end of a job that names no notify_url of its own is told (optional);
- RECEIVER_NOTIFY_SECRET: the signing secret, `whsec_` + base64 of at least 16 random bytes (the
  Standard Webhooks format). Required once any notification can be sent: with RECEIVER_NOTIFY_URL
  the receiver refuses to start without it; without, a job naming a notify_url is refused (503);
- RECEIVER_NOTIFY_ALLOW_PRIVATE: allow notify URLs on loopback/private/link-local addresses;
- RECEIVER_NOTIFY_SCHEDULE: seconds before each attempt (default Svix's 0,5,300,1800,7200,18000,
  36000,36000); RECEIVER_NOTIFY_TIMEOUT: seconds one attempt may take (default 15); a notification's
  claim lasts RECEIVER_CLAIM_LEASE, or twice the timeout if that is longer (`notify_lease`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .domain.notifications import parse_schedule
from .notify_url import RefusedUrl, check_notify_url

if TYPE_CHECKING:
    from .settings import Settings

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 16


def secret_bytes(value: str) -> bytes:
    """The key a `whsec_...` secret stands for, decoded strictly: a typo is an error here, never a
    silently different key (the reference library decodes leniently and drops stray characters)."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX} (whsec_ + base64 of random bytes)")
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not whsec_ + valid base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"is too short: at least {MIN_SECRET_BYTES} random bytes, base64-encoded")
    return key


def notify_lease(settings: Settings) -> float:
    """How long the notifier's claim on a notification lasts: a send must end well within it."""
    return max(settings.claim_lease, 2 * settings.notify_timeout)


def read_notify_env(text: Callable[[str], str | None]) -> dict[str, Any]:
    """The notification settings found in the environment (`text(name)`: a stripped value or None)."""
    from .settings import _BOOLEAN, Secret, SettingsError

    values: dict[str, Any] = {}
    if (url := text("RECEIVER_NOTIFY_URL")) is not None:
        values["notify_url"] = url
    if (secret := text("RECEIVER_NOTIFY_SECRET")) is not None:
        values["notify_secret"] = Secret(secret)
    if (allow := text("RECEIVER_NOTIFY_ALLOW_PRIVATE")) is not None:
        if allow.lower() not in _BOOLEAN:
            raise SettingsError(f"RECEIVER_NOTIFY_ALLOW_PRIVATE={allow!r}: use true or false")
        values["notify_allow_private"] = _BOOLEAN[allow.lower()]
    if (schedule := text("RECEIVER_NOTIFY_SCHEDULE")) is not None:
        try:
            values["notify_schedule"] = parse_schedule(schedule)
        except ValueError as exc:
            raise SettingsError(f"RECEIVER_NOTIFY_SCHEDULE={exc}") from None
    if (timeout := text("RECEIVER_NOTIFY_TIMEOUT")) is not None:
        try:
            values["notify_timeout"] = float(timeout)
        except ValueError:
            raise SettingsError(f"RECEIVER_NOTIFY_TIMEOUT={timeout!r} is not a number") from None
        if not 0 < values["notify_timeout"] <= 120:
            raise SettingsError(f"RECEIVER_NOTIFY_TIMEOUT={timeout!r} must be > 0 and <= 120 seconds")
    return values


def check_notify(settings: Settings) -> None:
    """SettingsError (one line, never the secret) for notification settings that cannot work."""
    from .settings import SettingsError

    if settings.notify_secret is not None:
        try:
            secret_bytes(settings.notify_secret.reveal())
        except ValueError as exc:
            raise SettingsError(f"RECEIVER_NOTIFY_SECRET {exc}") from None
    if settings.notify_url is not None:
        try:
            check_notify_url(settings.notify_url, allow_private=settings.notify_allow_private)
        except RefusedUrl as exc:
            raise SettingsError(f"RECEIVER_NOTIFY_URL: {exc}") from None
        if settings.notify_secret is None:
            raise SettingsError(
                "RECEIVER_NOTIFY_URL is set but RECEIVER_NOTIFY_SECRET is not: notifications are signed; "
                'set it to whsec_ + base64 of 24+ random bytes (python -c "import base64, os; '
                "print('whsec_' + base64.b64encode(os.urandom(24)).decode())\")"
            )
