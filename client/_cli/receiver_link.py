"""The client's side of the webhook receiver, configured by environment variables only.

`RECEIVER_PUBLIC_URL` gives jobs their default callback URL; `RECEIVER_URL` and `RECEIVER_API_TOKEN`
let `submit` register each new job with the receiver. The receiver is reached over HTTP, never
imported: client/ does not depend on receiver/.
"""

from __future__ import annotations

import os

import click
import httpx

from .._types import VideoJob
from .._webhooks import WEBHOOK_PATH
from .errors import one_line

RECEIVER_TIMEOUT = 10.0


def register_with_receiver(job: VideoJob, model: str, prompt: str | None) -> None:
    """Tell the webhook receiver about a new job (`RECEIVER_URL`, `RECEIVER_API_TOKEN`). Warns on failure."""
    base = os.environ.get("RECEIVER_URL", "").strip()
    token = os.environ.get("RECEIVER_API_TOKEN", "").strip()
    if not base or not token:
        return
    url = base.rstrip("/") + "/jobs"
    try:
        response = httpx.post(
            url,
            json={"id": job.id, "model": model, "prompt": prompt},
            headers={"Authorization": f"Bearer {token}"},
            timeout=RECEIVER_TIMEOUT,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if response.status_code < 300:
            return
        problem = f"HTTP {response.status_code} {one_line(response.text)[:200]}"
    click.echo(
        f"warning: could not register job {job.id} with the receiver at {url} ({one_line(problem)}); "
        f"the job exists and is paid for - keep its id: {job.id}",
        err=True,
    )


def receiver_callback_url() -> str | None:
    public = os.environ.get("RECEIVER_PUBLIC_URL", "").strip()
    return public.rstrip("/") + WEBHOOK_PATH if public else None
