"""Helpers for the named-token suites: tokens made with the real CLI, requests under a token."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from backends import Backend
from click.testing import CliRunner, Result

from openrouter_video._cli import cli

VEO = "google/veo-3.1"
BODY = {"model": VEO, "prompt": "a red fox in fresh snow", "duration": 4, "resolution": "720p"}


def tokens_cli(backend: Backend, data_dir: str, *args: str) -> Result:
    """`openrouter-video tokens ARGS --data-dir DIR` on the backend's stores, as an operator runs it."""
    env: dict[str, str | None] = {**backend.env, "RECEIVER_DATA_DIR": None}
    # On a thread of its own: the command runs its own event loop, and a test may already have one
    # running on this thread (Playwright's sync API, in the dashboard suites).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(
            CliRunner().invoke,
            cli,
            ["tokens", *args, "--data-dir", data_dir],
            env=env,
            catch_exceptions=False,
        ).result()


def create_token(backend: Backend, data_dir: str, name: str, role: str, *more: str) -> str:
    result = tokens_cli(backend, data_dir, "create", name, "--role", role, *more)
    assert result.exit_code == 0, result.output
    assert "not shown again" in result.output
    found = re.search(r"^token:\s+(orv_\S+)$", result.output, re.MULTILINE)
    assert found, result.output
    return found.group(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(url: str, token: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers=bearer(token), timeout=30, **kwargs)


def submit(url: str, token: str, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    headers = {**bearer(token), "Idempotency-Key": key}
    return httpx.post(f"{url}/jobs", json=body or BODY, headers=headers, timeout=30)


def listed(url: str, token: str) -> set[str]:
    answer = get(url, token, "/jobs", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    return {job["id"] for job in answer.json()["jobs"]}


def event_jobs_until(url: str, token: str, since: str, marker: str) -> list[str]:
    """The job ids GET /events sends `token` from cursor `since` up to the `marker` job's event."""
    seen: list[str] = []
    headers = {**bearer(token), "Last-Event-ID": since}
    with httpx.stream("GET", f"{url}/events", headers=headers, timeout=httpx.Timeout(30)) as stream:
        assert stream.status_code == 200
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "job":
                seen.append(json.loads(line.removeprefix("data: "))["id"])
                if seen[-1] == marker:
                    return seen
    raise AssertionError(f"the stream ended before {marker}: {seen}")


def events_cursor(url: str, token: str) -> str:
    """Where the change feed stands now (the `ready` event's id)."""
    with httpx.stream("GET", f"{url}/events", headers=bearer(token), timeout=httpx.Timeout(30)) as stream:
        for line in stream.iter_lines():
            if line.startswith("id: "):
                return line.removeprefix("id: ")
    raise AssertionError("no ready event")
