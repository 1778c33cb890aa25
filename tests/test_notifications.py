"""Signed notifications to apps (issue 15), over real HTTP: a real receiver (each storage backend), the
simulator, and a small real app under uvicorn on loopback that verifies every notification with the
`standardwebhooks` library, fails when told to, and counts what reaches it."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from receiver_support import (
    AUTH,
    ReceiverProcess,
    RunningReceiver,
    public_receiver,
    receiver_settings,
    running_receiver,
    signed_event,
    wait_until,
)
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from support import UvicornThread
from token_support import tokens_cli

from openrouter_video.receiver.settings import Secret

pytestmark = pytest.mark.timeout(180)

SECRET = "whsec_" + base64.b64encode(b"notify-test-secret-0123456789").decode()
VEO = "google/veo-3.1"
BODY = {"model": VEO, "prompt": "a red fox in fresh snow", "duration": 4, "resolution": "720p"}
FAST = (0.0, 0.2, 0.2)  # three attempts, then dead


@dataclasses.dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    answered: int


class App:
    """The app being notified: `/hook` answers 500 to the first `fail_first` requests (all of them
    while `failing`), then 200; `/redirect` answers 307 to `/target`, which counts its hits."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.failing = False
        self.received: list[Received] = []
        self.target_hits = 0
        self._lock = threading.Lock()
        routes = [
            Route("/hook", self._hook, methods=["POST"]),
            Route("/redirect", self._redirect, methods=["POST"]),
            Route("/target", self._target, methods=["POST", "GET"]),
        ]
        self.server = UvicornThread(Starlette(routes=routes))

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            fail = self.failing or len(self.received) < self.fail_first
            status = 500 if fail else 200
            self.received.append(Received(body, dict(request.headers), status))
        return JSONResponse({"ok": not fail}, status_code=status)

    async def _redirect(self, request: Request) -> Response:
        return RedirectResponse(f"{self.url}/target", status_code=307)

    async def _target(self, request: Request) -> Response:
        self.target_hits += 1
        return JSONResponse({"ok": True})

    @property
    def url(self) -> str:
        return self.server.url

    def delivered(self) -> list[Received]:
        return [r for r in self.received if r.answered == 200]


@pytest.fixture
def app() -> Iterator[App]:
    notified = App()
    with notified.server:
        yield notified


def notify_settings(**more: Any) -> dict[str, Any]:
    return {"notify_secret": Secret(SECRET), "notify_allow_private": True, **more}


@contextlib.contextmanager
def receiver_with(tmp_path, simulator, backend, **more: Any) -> Iterator[RunningReceiver]:
    settings = backend.settings(str(tmp_path / "data"), simulator, **notify_settings(**more))
    with public_receiver(settings) as rx:
        yield rx


def verified(received: Received) -> dict[str, Any]:
    """The notification as the app reads it, once the reference library verified it."""
    payload = Webhook(SECRET).verify(received.body, received.headers)
    assert isinstance(payload, dict)
    return payload


def register(rx: RunningReceiver | ReceiverProcess, job_id: str, notify_url: str) -> httpx.Response:
    return httpx.post(
        f"{rx.url}/jobs", json={"id": job_id, "notify_url": notify_url}, headers=AUTH, timeout=10
    )


def send(
    rx: Any, secret: str, job_id: str, status: str, *, key: str | None = None, at: int | None = None
) -> None:
    data: dict[str, Any] = {"id": job_id, "status": status, "model": VEO}
    if status == "failed":
        data["error"] = "content policy"
    body, headers = signed_event(secret, data, key=key, timestamp=at)
    answer = httpx.post(f"{rx.url}/webhooks/openrouter", content=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


def notifications(rx: Any, **params: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{rx.url}/notifications", params=params, headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["notifications"]


def wait_state(rx: Any, job_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
    return wait_until(
        lambda: next((n for n in notifications(rx, job_id=job_id) if n["state"] == state), None),
        timeout,
        what=f"the notification of {job_id} to be {state}",
    )


def test_a_completed_job_is_told_once_its_outputs_are_stored_signed_and_retried(
    tmp_path, simulator, backend, app
) -> None:
    app.fail_first = 2
    with receiver_with(tmp_path, simulator, backend, notify_schedule=FAST) as rx:
        answer = httpx.post(
            f"{rx.url}/jobs",
            json={**BODY, "notify_url": f"{app.url}/hook"},
            headers={**AUTH, "Idempotency-Key": "fox-notify-1"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["job_id"]
        assert answer.json()["notify_url"] == f"{app.url}/hook"
        wait_until(lambda: app.delivered(), 30, what="the notification to be delivered")
        # The content it names is there: the app can fetch the bytes the moment it is told.
        received = list(app.received)
        payload = verified(received[-1])
        assert payload["type"] == "video.completed"
        data = payload["data"]
        assert data["id"] == job_id and data["status"] == "completed"
        assert data["outputs"] and all(o["state"] == "done" for o in data["outputs"])
        [url] = data["content_urls"]
        assert url == f"{rx.url}/jobs/{job_id}/content?index=0"
        video = httpx.get(url, headers=AUTH, timeout=30)
        assert video.status_code == 200
        assert hashlib.sha256(video.content).hexdigest() == data["outputs"][0]["sha256"]

        # Failed twice, then delivered: every attempt signed afresh, under one webhook-id.
        assert [r.answered for r in received] == [500, 500, 200]
        assert len({r.headers["webhook-id"] for r in received}) == 1
        for attempt in received:
            verified(attempt)
        [record] = notifications(rx, job_id=job_id)
        assert record["id"] == received[0].headers["webhook-id"]
        assert record["state"] == "delivered" and record["attempts"] == 3 and record["last_status"] == 200
        assert notifications(rx, state="delivered")[0]["id"] == record["id"]
        # The receiver field never went upstream.
        [sim_job] = httpx.get(f"{simulator.admin_url}/jobs", timeout=10).json()["data"]
        assert "notify_url" not in json.dumps(sim_job)


def test_a_failed_job_is_told_once_however_often_its_webhook_is_applied(
    tmp_path, simulator, backend, app
) -> None:
    job_id = "gen-vid-notify-failed-1"
    with receiver_with(tmp_path, simulator, backend) as rx:
        assert register(rx, job_id, f"{app.url}/hook").status_code == 201
        send(rx, simulator.secret, job_id, "failed")
        wait_until(lambda: app.delivered(), 20, what="the notification")
        payload = verified(app.received[0])
        assert payload["type"] == "video.failed"
        assert payload["data"]["status"] == "failed" and payload["data"]["error"] == "content policy"
        assert payload["data"]["content_urls"] == []

        # The same end again (a resent webhook under another key, applied again): no second one.
        send(rx, simulator.secret, job_id, "failed", key=f"{job_id}-again", at=int(time.time()) - 5)
        rx.applied()
        assert len(notifications(rx, job_id=job_id)) == 1
        assert len(app.received) == 1


@pytest.mark.parametrize("signal", ["kill", "stop"])
def test_a_pending_notification_survives_a_restart(tmp_path, simulator, backend, app, signal) -> None:
    app.failing = True
    job_id = f"gen-vid-notify-restart-{signal}"
    settings = backend.settings(str(tmp_path / "data"), simulator, claim_lease=10.0)
    env = {
        "RECEIVER_NOTIFY_SECRET": SECRET,
        "RECEIVER_NOTIFY_ALLOW_PRIVATE": "true",
        "RECEIVER_NOTIFY_SCHEDULE": "0,1.5,1.5,1.5,1.5,1.5,1.5,1.5",
        "RECEIVER_NOTIFY_TIMEOUT": "2",
    }
    rx = ReceiverProcess(settings, extra_env=env).start()
    try:
        assert register(rx, job_id, f"{app.url}/hook").status_code == 201
        send(rx, simulator.secret, job_id, "cancelled")
        # Its first attempt failed and was recorded: pending, with its next attempt to come.
        wait_until(
            lambda: any(n["last_status"] == 500 for n in notifications(rx, job_id=job_id)),
            20,
            what="a failed attempt",
        )
        rx.kill() if signal == "kill" else rx.stop()
        app.failing = False
        rx.start()
        delivered = wait_state(rx, job_id, "delivered", timeout=30)
        assert {r.headers["webhook-id"] for r in app.received} == {delivered["id"]}
        assert verified(app.delivered()[0])["type"] == "video.cancelled"
    finally:
        rx.stop()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "RECEIVER_"))}
    return subprocess.run(
        [sys.executable, "-m", "openrouter_video._cli", *args],
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dead_after_the_last_attempt_then_replayed_by_the_api_and_the_cli(
    tmp_path, simulator, backend, app
) -> None:
    app.failing = True
    with receiver_with(tmp_path, simulator, backend, notify_schedule=FAST) as rx:
        for job_id in ("gen-vid-notify-dead-1", "gen-vid-notify-dead-2"):
            assert register(rx, job_id, f"{app.url}/hook").status_code == 201
            send(rx, simulator.secret, job_id, "expired")
        dead = [wait_state(rx, j, "dead") for j in ("gen-vid-notify-dead-1", "gen-vid-notify-dead-2")]
        assert all(n["attempts"] == len(FAST) and n["last_status"] == 500 for n in dead)
        assert len(app.received) == 2 * len(FAST)
        metrics = httpx.get(f"{rx.url}/metrics", headers=AUTH, timeout=10).text
        assert "receiver_notifications_dead 2.0" in metrics

        app.failing = False
        answer = httpx.post(f"{rx.url}/notifications/{dead[0]['id']}/retry", headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["notification"]["state"] == "pending"
        wait_state(rx, dead[0]["job_id"], "delivered")
        assert [r.headers["webhook-id"] for r in app.delivered()] == [dead[0]["id"]]

        listed = run_cli(
            "notifications", "list", "--state", "dead", "--data-dir", rx.settings.data_dir, env=backend.env
        )
        assert listed.returncode == 0, listed.stderr
        assert dead[1]["id"] in listed.stdout and dead[0]["id"] not in listed.stdout
        retried = run_cli(
            "notifications", "retry", "--dead", "--data-dir", rx.settings.data_dir, env=backend.env
        )
        assert retried.returncode == 0, retried.stderr
        assert f"{dead[1]['id']}: pending" in retried.stdout
        wait_state(rx, dead[1]["job_id"], "delivered")
        assert [r.headers["webhook-id"] for r in app.delivered()] == [dead[0]["id"], dead[1]["id"]]

        unknown = run_cli(
            "notifications", "retry", "msg_nope", "--data-dir", rx.settings.data_dir, env=backend.env
        )
        assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
        assert "msg_nope" in unknown.stderr
        assert (
            httpx.post(f"{rx.url}/notifications/msg_nope/retry", headers=AUTH, timeout=10).status_code == 404
        )


def test_a_redirect_is_never_followed(tmp_path, simulator, app) -> None:
    settings = receiver_settings(
        str(tmp_path / "data"), simulator, **notify_settings(notify_schedule=(0, 0.2))
    )
    with running_receiver(settings) as rx:
        job_id = "gen-vid-notify-redirect"
        assert register(rx, job_id, f"{app.url}/redirect").status_code == 201
        send(rx, simulator.secret, job_id, "failed")
        dead = wait_state(rx, job_id, "dead")
        assert dead["last_status"] == 307 and "redirect" in dead["last_error"]
        assert app.target_hits == 0


def test_notify_urls_on_private_addresses_are_refused_unless_allowed(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, notify_secret=Secret(SECRET))
    with public_receiver(settings) as rx:
        for url, why in (
            ("http://127.0.0.1:9/hook", "loopback"),
            ("http://localhost/hook", "loopback"),
            ("http://10.1.2.3/hook", "private"),
            ("http://169.254.169.254/latest", "link-local"),
            ("http://[::1]/hook", "loopback"),
            ("http://0.0.0.0/hook", "unspecified"),
            ("https://user:pw@example.com/hook", "credentials"),
            ("ftp://example.com/hook", "http(s)"),
            ("/relative/hook", "http(s)"),
        ):
            refused = register(rx, "gen-vid-notify-refused", url)
            assert refused.status_code == 400, (url, refused.text)
            assert why in refused.json()["error"]["message"], (url, refused.text)
            paid = httpx.post(
                f"{rx.url}/jobs",
                json={**BODY, "notify_url": url},
                headers={**AUTH, "Idempotency-Key": "fox-private"},
                timeout=30,
            )
            assert paid.status_code == 400, (url, paid.text)
        stats = httpx.get(f"{simulator.admin_url}/stats", timeout=10).json()
        assert stats["requests"].get("submits", 0) == 0  # refused before anything was paid
        assert httpx.get(f"{rx.url}/jobs/gen-vid-notify-refused", headers=AUTH, timeout=10).status_code == 404

    # No signing secret: a notify_url cannot be honoured (503), whatever the address.
    unsigned = receiver_settings(str(tmp_path / "data2"), simulator, notify_allow_private=True)
    with running_receiver(unsigned) as rx:
        answer = register(rx, "gen-vid-notify-unsigned", "http://127.0.0.1:9/hook")
        assert answer.status_code == 503 and "RECEIVER_NOTIFY_SECRET" in answer.text
    allowed = receiver_settings(str(tmp_path / "data3"), simulator, **notify_settings())
    with running_receiver(allowed) as rx:
        assert register(rx, "gen-vid-notify-allowed", "http://127.0.0.1:9/hook").status_code == 201


def test_an_apps_notifications_are_signed_with_its_own_secret(tmp_path, simulator, backend, app) -> None:
    created = tokens_cli(backend, str(tmp_path / "data"), "create", "shop", "--role", "submit")
    assert created.exit_code == 0, created.output
    token = re.search(r"^token:\s+(\S+)$", created.output, re.MULTILINE).group(1)  # type: ignore[union-attr]
    own = re.search(r"^notify secret:\s+(\S+)$", created.output, re.MULTILINE).group(1)  # type: ignore[union-attr]
    shop = {"Authorization": f"Bearer {token}"}
    with receiver_with(tmp_path, simulator, backend, notify_schedule=FAST) as rx:
        answer = httpx.post(
            f"{rx.url}/jobs",
            json={**BODY, "notify_url": f"{app.url}/hook"},
            headers={**shop, "Idempotency-Key": "shop-1"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        wait_until(lambda: app.delivered(), 30, what="the app's notification")
        [received] = app.received
        payload = Webhook(own).verify(received.body, received.headers)
        assert payload["data"]["owner"] == "shop"
        with pytest.raises(WebhookVerificationError):  # not the receiver's secret: apps cannot forge
            Webhook(SECRET).verify(received.body, received.headers)
        # The app's content URL works with the app's own token.
        [url] = payload["data"]["content_urls"]
        assert httpx.get(url, headers=shop, timeout=30).status_code == 200

        # A revoked token's notifications are not sent (signed with another key, nobody could verify them).
        job_id = "gen-vid-notify-revoked"
        registered = httpx.post(
            f"{rx.url}/jobs", json={"id": job_id, "notify_url": f"{app.url}/hook"}, headers=shop, timeout=10
        )
        assert registered.status_code == 201, registered.text
        assert tokens_cli(backend, str(tmp_path / "data"), "revoke", "shop").exit_code == 0
        send(rx, simulator.secret, job_id, "failed")
        dead = wait_state(rx, job_id, "dead")
        assert "token 'shop' was revoked" in dead["last_error"] and dead["owner"] == "shop"
        assert len(app.received) == 1


def test_the_send_connects_to_the_address_checked_not_a_second_dns_answer(app) -> None:
    from openrouter_video.receiver.notify_url import pinned

    port = httpx.URL(app.url).port
    # `app.invalid` resolves nowhere: the POST still reaches the app, so it went to the pinned address,
    # and the app sees its own host name (virtual hosts, and TLS's server name for https, still work).
    target, host, extensions = pinned(f"http://app.invalid:{port}/hook?x=1", "127.0.0.1")
    assert str(target) == f"http://127.0.0.1:{port}/hook?x=1" and extensions == {}
    with httpx.Client(timeout=10) as client:
        answer = client.post(target, content=b"{}", headers=host, extensions=extensions)
    assert answer.status_code == 200 and app.received[-1].headers["host"] == f"app.invalid:{port}"
    secure, host, extensions = pinned("https://app.example.com/hook", "2001:db8::1")
    assert str(secure) == "https://[2001:db8::1]/hook"
    assert host == {"Host": "app.example.com"} and extensions == {"sni_hostname": "app.example.com"}
    assert pinned("https://app.example.com/hook", None) == (httpx.URL("https://app.example.com/hook"), {}, {})
