"""Signed notifications to apps, the pure parts: which job change notifies and where, the retry
schedule, the signature (checked with the library and by hand), the notify URL and settings rules.
The behaviour over real HTTP is tests/test_notifications.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks import Webhook

from openrouter_video.receiver.domain.notifications import (
    DEFAULT_SCHEDULE,
    JobEnd,
    next_attempt,
    parse_schedule,
    plan_notification,
)
from openrouter_video.receiver.notify_signing import signed_headers
from openrouter_video.receiver.notify_url import RefusedUrl, check_notify_url
from openrouter_video.receiver.settings import Settings, SettingsError
from openrouter_video.receiver.settings_notify import secret_bytes

SECRET = "whsec_" + base64.b64encode(b"notify-test-secret-0123456789").decode()


@pytest.mark.parametrize(
    ("status", "outputs", "event"),
    [
        ("failed", (), "video.failed"),
        ("cancelled", (), "video.cancelled"),
        ("expired", ("pending",), "video.expired"),  # not completed: outputs do not matter
        ("completed", ("done", "done"), "video.completed"),
        ("completed", ("done", "gone", "failed"), "video.completed"),  # every output final
        ("completed", (), "video.completed"),  # nothing to store
        ("completed", ("done", "pending"), None),  # told once every output is stored
        ("completed", ("downloading",), None),
        ("in_progress", (), None),
        ("pending", (), None),
    ],
)
def test_which_job_changes_notify(status: str, outputs: tuple[str, ...], event: str | None) -> None:
    job = JobEnd("gen-vid-1", status, "https://app.example/hook", outputs)
    planned = plan_notification(job, default_url=None, now=100.0)
    assert (planned.event if planned else None) == event
    if planned is not None:
        assert planned.id.startswith("msg_") and planned.url == "https://app.example/hook"
        assert planned.created_at == 100.0


def test_where_a_job_is_told() -> None:
    own = JobEnd("gen-vid-1", "failed", "https://own.example/hook")
    none = JobEnd("gen-vid-1", "failed", None)
    assert (
        plan_notification(own, default_url="https://default.example/", now=0).url
        == "https://own.example/hook"
    )
    assert (
        plan_notification(none, default_url="https://default.example/", now=0).url
        == "https://default.example/"
    )
    assert plan_notification(none, default_url=None, now=0) is None  # nowhere to tell: nothing written
    assert plan_notification(None, default_url="https://default.example/", now=0) is None


def test_the_retry_schedule_is_svix_like_with_jitter_and_ends_dead() -> None:
    assert DEFAULT_SCHEDULE[0] == 0 and sum(DEFAULT_SCHEDULE) >= 24 * 3600  # at least a day in all
    assert next_attempt(1, DEFAULT_SCHEDULE, 0.5) == 5  # after attempt 1: 5 s (no jitter at 0.5)
    for rand in (0.0, 0.999):
        delay = next_attempt(2, DEFAULT_SCHEDULE, rand)
        assert delay is not None and 270 <= delay <= 330  # 5 min +-10 %
    assert next_attempt(len(DEFAULT_SCHEDULE), DEFAULT_SCHEDULE, 0.5) is None  # dead
    assert parse_schedule("0,0.2, 0.2") == (0.0, 0.2, 0.2)
    for bad in ("", "a,b", "-1", "nan", "1e9"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_signatures_verify_with_the_library_and_by_hand() -> None:
    body = json.dumps({"type": "video.failed", "data": {"prompt": "caf\u00e9 \u2615"}}).encode()
    now = int(time.time())
    headers = signed_headers(secret_bytes(SECRET), "msg_0123456789abcdef01234567", now, body)
    assert Webhook(SECRET).verify(body, headers)["type"] == "video.failed"
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"msg_0123456789abcdef01234567.{now}.".encode() + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    assert headers["webhook-timestamp"] == str(now)


def test_notify_url_rules_by_text() -> None:
    assert check_notify_url("https://app.example/hook?x=1", allow_private=False)
    assert check_notify_url("http://127.0.0.1:8080/hook", allow_private=True)
    for url in ("https://u:p@app.example/", "gopher://app.example/", "https://", "http://[::1]:80/", 42):
        with pytest.raises(RefusedUrl):
            check_notify_url(url, allow_private=False)


def test_notify_settings_are_checked_at_start() -> None:
    base = {"OPENROUTER_API_KEY": "k", "OPENROUTER_WEBHOOK_SECRET": "s"}
    with pytest.raises(SettingsError, match="RECEIVER_NOTIFY_SECRET is not"):
        Settings.from_env({**base, "RECEIVER_NOTIFY_URL": "https://app.example/hook"})
    with pytest.raises(SettingsError, match="RECEIVER_NOTIFY_SECRET"):
        Settings.from_env({**base, "RECEIVER_NOTIFY_SECRET": "whsec_not!base64"})  # strict, never lenient
    with pytest.raises(SettingsError, match="too short"):
        Settings.from_env({**base, "RECEIVER_NOTIFY_SECRET": "whsec_" + base64.b64encode(b"short").decode()})
    settings = Settings.from_env(
        {**base, "RECEIVER_NOTIFY_URL": "https://app.example/hook", "RECEIVER_NOTIFY_SECRET": SECRET}
    )
    assert SECRET not in repr(settings)
