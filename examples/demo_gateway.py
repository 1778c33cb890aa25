"""`make demo`, second part: an app that holds no API key submits through the receiver and is told.

The app has a `submit` token of its own (`openrouter-video tokens create demo-app --role submit`,
run by the demo before the receiver starts) and a small HTTP endpoint on loopback. It submits one
job through the receiver with an Idempotency-Key and a `notify_url`, retries the same submit as a
timed-out app would (the same job, paid once), then does nothing until the receiver POSTs it a
notification signed with the Standard Webhooks scheme. It verifies the signature with the
`standardwebhooks` library, fetches the video from the content URL in the notification with its own
token, and checks that it sees its own job and no one else's.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

from openrouter_video import ReceiverClient

NOTIFY_PATH = "/video-ready"
NOTIFY_DEADLINE = 60.0


class AppEndpoint:
    """The app's notification endpoint: verifies each POST, keeps the verified ones."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.arrived = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    payload = endpoint.webhook.verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    endpoint.refused += 1
                    self.send_response(400)
                else:
                    endpoint.received.append({"id": self.headers["webhook-id"], **payload})
                    endpoint.arrived.set()
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the demo prints what matters

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{NOTIFY_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AppEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_app(rx_url: str, app_token: str, notify_secret: str, model: str) -> int:
    print("\nan app submits through the receiver (it holds no API key) and is notified:")
    started = time.monotonic()
    with AppEndpoint(notify_secret) as app, ReceiverClient(rx_url, app_token) as rx:
        fields = {"duration": 4, "resolution": "720p", "notify_url": app.url}
        first = rx.submit("a hummingbird over a garden", model=model, idempotency_key="demo-app-1", **fields)
        again = rx.submit("a hummingbird over a garden", model=model, idempotency_key="demo-app-1", **fields)
        job_id = first["job_id"]
        print(f"  submitted job {job_id} (Idempotency-Key demo-app-1); notify_url {app.url}")
        print(f"  the same submit again, as after a timeout: job {again['job_id']} (the same: paid once)")
        if again["job_id"] != job_id:
            print("demo: a retried submit made a second job", flush=True)
            return 1
        if not app.arrived.wait(NOTIFY_DEADLINE):
            print(f"demo: no notification within {NOTIFY_DEADLINE:.0f}s (refused: {app.refused})")
            return 1
        note = app.received[0]
        job = note["data"]
        print(
            f"  [{time.monotonic() - started:5.1f}s] notification {note['id']} {note['type']}: "
            f"signature verified with standardwebhooks (the app's own secret); job {job['status']}"
        )
        for output, url in zip(job["outputs"], job["content_urls"], strict=True):
            video = httpx.get(url, headers={"Authorization": f"Bearer {app_token}"}, timeout=30)
            digest = hashlib.sha256(video.content).hexdigest()
            print(f"  fetched {url}: {len(video.content)} bytes, sha256 {digest[:16]}...")
            if video.status_code != 200 or digest != output["sha256"]:
                print("demo: the notified video is not the stored one")
                return 1
        mine = [j["id"] for j in rx.jobs()]
        print(f"  the app's token lists {len(mine)} job: {', '.join(mine)} (the other jobs are not its)")
        if mine != [job_id] or app.refused:
            print(f"demo: the app saw {json.dumps(mine)}; refused notifications: {app.refused}")
            return 1
    return 0
