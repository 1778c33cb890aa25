"""Helpers for the dashboard tests: the system's Chromium driven by Playwright, signing in, artifacts.

Chromium is Debian's (`apt-get install chromium`, done by .ci/run), never a browser Playwright
downloads. Without it (or without the playwright package) the browser tests skip with one line of
reason; under CI=true they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: the browser suite must run there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright `Browser`), closed afterwards. `launch` gives it a fresh temporary
    profile of its own (and each `new_context()` is a clean one within it)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright; no browser download needed)")
    path = chromium_path()
    if path is None:
        unavailable("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artifact (tests/artifacts/, not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


class ConsoleWatch:
    """Collects console errors and uncaught page errors of every page it is attached to."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page: Any) -> Any:
        page.on(
            "console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None
        )
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        return page


def sign_in(page: Any, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/ui/signin")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/ui/")


@contextlib.contextmanager
def http_session(base_url: str, token: str) -> Iterator[httpx.Client]:
    """An httpx client signed in to the dashboard (cookie jar), for the HTTP-level checks."""
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=10) as client:
        form = client.get("/ui/signin")
        nonce = re.search(r'name="nonce" value="(\w+)"', form.text)
        assert nonce, form.text[:500]
        answer = client.post("/ui/signin", data={"nonce": nonce.group(1), "token": token, "next": "/ui/"})
        assert answer.status_code == 303, answer.text[:500]
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)
