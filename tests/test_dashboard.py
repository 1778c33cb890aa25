"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real receiver on
loopback fed by the simulator: sign-in and sign-out, the jobs table and its filters, a playing video,
live status without a reload, reprocess and retry from the pages, escaping, CSRF, no console errors,
no token in any page. Screenshots of each page land in tests/artifacts/.

Without Chromium or playwright these tests skip (one line says which); with CI=true they fail.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from dashboard_support import ConsoleWatch, chromium, screenshot, sign_in
from receiver_support import API_TOKEN, RunningReceiver, receiver_settings, running_receiver, wait_until
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from support import RunningSimulator, UvicornThread, fast_simulator_config, running_simulator

from openrouter_video import OpenRouterVideo

MODEL = "google/veo-3.1"
OTHER_MODEL = "google/veo-3.1-fast"
SECONDS = 4
XSS_PROMPT = '<script>alert(1)</script> and "><img src=x onerror=alert(1)> in a prompt'
OLD_DAY = "2025-01-15"


@dataclass
class Stack:
    sim: RunningSimulator
    rx: RunningReceiver
    browser: Any
    api: OpenRouterVideo
    jobs: dict[str, str]  # label -> job id

    def submit(self, label: str, prompt: str, *, model: str = MODEL, **params: Any) -> str:
        job = self.api.submit(
            prompt,
            model=model,
            duration=SECONDS,
            resolution="720p",
            callback_url=self.rx.webhook_url,
            **params,
        )
        answer = self.rx.post("/jobs", json={"id": job.id, "model": model, "prompt": prompt})
        assert answer.status_code in (200, 201), answer.text
        self.jobs[label] = job.id
        return job.id

    def page(self, watch: ConsoleWatch | None = None, *, signed_in: bool = True, **context: Any) -> Any:
        ctx = self.browser.new_context(**context)
        page = ctx.new_page()
        if watch is not None:
            watch.attach(page)
        if signed_in:
            sign_in(page, self.rx.url, API_TOKEN)
        return page


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    config = fast_simulator_config(pending_seconds=0.1, in_progress_seconds=0.2)
    with (
        running_simulator(config) as sim,
        tempfile.TemporaryDirectory() as data_dir,
        running_receiver(receiver_settings(data_dir, sim, download_max_attempts=2)) as rx,
        OpenRouterVideo(api_key=sim.api_key, base_url=sim.api_base) as api,
        chromium() as browser,  # closed first: its pages' live streams end before the receiver stops
    ):
        stack = Stack(sim, rx, browser, api, {})
        stack.submit("fox", "a red fox trotting through fresh snow at dawn")
        stack.submit("failed", "[sim:outcome=failed] a scene the provider refuses")
        stack.submit("xss", XSS_PROMPT)
        stack.submit("other", "a paper boat drifting down a rain gutter", model=OTHER_MODEL)
        stack.submit("old", "an old lighthouse in a storm")
        for label in ("fox", "xss", "other", "old"):
            rx.wait_downloaded(stack.jobs[label])
        rx.wait_job(stack.jobs["failed"], lambda j: j["status"] == "failed")
        with contextlib.closing(rx.db()) as conn:  # one job from long ago, for the date filters
            old = time.mktime(time.strptime(f"{OLD_DAY} 12:00", "%Y-%m-%d %H:%M")) - time.timezone
            conn.execute("UPDATE jobs SET created_at = ? WHERE id = ?", (old, stack.jobs["old"]))
        yield stack


def _rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#jobs-table tr[data-job]", "rows => rows.map(r => r.dataset.job)")


def test_sign_in_refuses_a_wrong_token_then_signs_in_and_out(stack: Stack) -> None:
    watch = ConsoleWatch()
    page = stack.page(watch, signed_in=False)
    page.goto(f"{stack.rx.url}/ui/ops")
    assert page.url.startswith(f"{stack.rx.url}/ui/signin")
    screenshot(page, "signin")
    page.fill("#token", "not-the-token-0123456789")
    page.click("button[type=submit]")
    assert "not this receiver's API token" in page.inner_text("#signin-error")
    assert page.context.cookies() and all(c["name"] != "orv_session" for c in page.context.cookies())
    page.fill("#token", API_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{stack.rx.url}/ui/ops")  # back where it was going
    session = next(c for c in page.context.cookies() if c["name"] == "orv_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/ui"
    page.click("text=Sign out")
    page.wait_for_url(f"{stack.rx.url}/ui/signin?signed_out=1")
    page.goto(f"{stack.rx.url}/ui/")
    assert page.url.startswith(f"{stack.rx.url}/ui/signin")
    assert watch.errors == []


def test_the_jobs_table_shows_the_jobs_and_each_filter_narrows_it(stack: Stack) -> None:
    watch = ConsoleWatch()
    page = stack.page(watch)
    shown = _rows(page)
    assert set(stack.jobs.values()) <= set(shown)
    screenshot(page, "jobs")
    page.select_option("#f-status", "failed")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**status=failed**")
    assert _rows(page) == [stack.jobs["failed"]]
    page.goto(f"{stack.rx.url}/ui/")
    page.select_option("#f-model", OTHER_MODEL)
    page.click("#filters button[type=submit]")
    page.wait_for_url("**model=**")
    assert _rows(page) == [stack.jobs["other"]]
    page.goto(f"{stack.rx.url}/ui/")
    page.fill("#f-until", OLD_DAY)
    page.click("#filters button[type=submit]")
    page.wait_for_url("**until=**")
    assert _rows(page) == [stack.jobs["old"]]
    page.goto(f"{stack.rx.url}/ui/")
    page.fill("#f-since", time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400)))
    page.click("#filters button[type=submit]")
    page.wait_for_url("**since=**")
    assert stack.jobs["old"] not in _rows(page) and stack.jobs["fox"] in _rows(page)
    page.goto(f"{stack.rx.url}/ui/")
    page.fill("#f-q", "RED FOX")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**q=**")
    assert _rows(page) == [stack.jobs["fox"]]
    page.fill("#f-q", stack.jobs["other"][:-3])  # a prefix of a job id
    page.click("#filters button[type=submit]")
    page.wait_for_url("**q=**")
    assert _rows(page) == [stack.jobs["other"]]
    assert "cost of this page" in page.inner_text("#jobs-table .summary")
    assert watch.errors == []


def test_a_job_page_plays_its_video_with_the_simulated_duration(stack: Stack) -> None:
    watch = ConsoleWatch()
    page = stack.page(watch)
    page.goto(f"{stack.rx.url}/ui/jobs/{stack.jobs['fox']}")
    video = page.locator("video")
    assert video.get_attribute("preload") == "metadata" and video.get_attribute("controls") is not None
    page.wait_for_function("() => document.querySelector('video').readyState >= 1", timeout=15000)
    duration = page.evaluate("document.querySelector('video').duration")
    assert abs(duration - SECONDS) < 0.2, duration
    # Seeking works (served with Range): jump near the end and play.
    page.evaluate("v => { v.muted = true; v.currentTime = 3.0; return v.play(); }", video.element_handle())
    page.wait_for_function("() => document.querySelector('video').currentTime >= 3.0")
    page.evaluate("document.querySelector('video').pause()")
    facts = page.inner_text("#outputs")
    record = stack.rx.job(stack.jobs["fox"])
    assert record is not None and record["outputs"][0]["sha256"] in facts
    href = page.get_attribute("#outputs a[download]", "href")
    assert href == f"/ui/jobs/{stack.jobs['fox']}/content?index=0&download=1"
    timeline = page.inner_text("#timeline")
    assert "registered" in timeline and "delivery" in timeline and "downloaded" in timeline
    screenshot(page, "job")
    assert watch.errors == []


def test_an_open_job_page_and_the_table_turn_completed_without_a_reload(stack: Stack) -> None:
    watch = ConsoleWatch()
    table = stack.page(watch)
    job_page = table.context.new_page()
    watch.attach(job_page)
    job_id = stack.submit("slow", "[sim:pending=1.5, in_progress=1.5] a slow sunrise over hills")
    job_page.goto(f"{stack.rx.url}/ui/jobs/{job_id}")
    table.goto(f"{stack.rx.url}/ui/")
    assert job_page.inner_text("#job-status") == "pending"
    job_page.wait_for_function("() => document.getElementById('live-indicator').dataset.state === 'on'")
    job_page.evaluate("window.__notReloaded = true")
    table.evaluate("window.__notReloaded = true")
    job_page.wait_for_function(
        "() => document.getElementById('job-status').textContent === 'completed'", timeout=20000
    )
    job_page.wait_for_selector("video", timeout=20000)  # the download shows too
    table.wait_for_function(
        "id => { const badge = document.querySelector(`tr[data-job='${id}'] .badge`);"
        " return badge !== null && badge.textContent === 'completed'; }",
        arg=job_id,
        timeout=20000,
    )
    assert (
        job_page.evaluate("window.__notReloaded") is True and table.evaluate("window.__notReloaded") is True
    )
    # The status came from the simulator's webhook, not from a poll.
    record = stack.rx.job(job_id)
    assert record is not None and record["source"] == "webhook"
    assert watch.errors == []


def test_a_failed_delivery_is_reprocessed_from_the_operations_page(stack: Stack) -> None:
    job_id = "gen-vid-1790000000-ReprocessMe0000000001"
    body = json.dumps(
        {
            "type": "video.generation.failed",
            "data": {"id": job_id, "status": "failed", "model": MODEL, "error": "upstream said no"},
        }
    ).encode()
    with contextlib.closing(stack.rx.db()) as conn:  # as a delivery a bug failed to apply is kept
        conn.execute(
            "INSERT INTO deliveries (idempotency_key, received_at, headers, body, state, error, applied_at) "
            "VALUES (?, ?, '{}', ?, 'failed', ?, ?)",
            (
                "reprocess-me",
                time.time(),
                body,
                "internal error while applying: RuntimeError: a bug",
                time.time(),
            ),
        )
    watch = ConsoleWatch()
    page = stack.page(watch)
    page.goto(f"{stack.rx.url}/ui/ops")
    row = page.locator("#deliveries tr", has_text="a bug")
    assert row.count() == 1
    screenshot(page, "ops")
    row.locator("button[data-action=reprocess]").click()
    page.wait_for_url(f"{stack.rx.url}/ui/ops")
    assert "1 applied" in page.inner_text(".flash")
    assert page.locator("#deliveries tr", has_text="a bug").count() == 0
    record = stack.rx.job(job_id)
    assert record is not None and record["status"] == "failed" and record["error"] == "upstream said no"
    assert watch.errors == []


def test_a_failed_download_is_retried_from_the_job_page(stack: Stack) -> None:
    stack.sim.config.faults.update({"gone": True})  # content answers 410: the output is given up as gone
    try:
        job_id = stack.submit("gone", "a lantern festival on a river")
        stack.rx.wait_job(job_id, lambda j: bool(j["outputs"]) and j["outputs"][0]["state"] == "gone")
    finally:
        stack.sim.config.faults.update({"gone": False})
    watch = ConsoleWatch()
    page = stack.page(watch)
    page.goto(f"{stack.rx.url}/ui/ops")
    assert page.locator("#outputs-attention tr", has_text=job_id[:30]).count() == 1
    page.goto(f"{stack.rx.url}/ui/jobs/{job_id}")
    assert page.get_attribute("[data-output='0']", "data-state") == "gone"
    page.click("button[data-action=retry-output]")
    page.wait_for_url(f"{stack.rx.url}/ui/jobs/{job_id}")
    assert "will be downloaded again now" in page.inner_text(".flash")
    page.wait_for_selector("[data-output='0'][data-state='done'] video", timeout=20000)  # live, no reload
    events = [e["kind"] for e in (stack.rx.job(job_id) or {})["events"]]
    assert "download_retry" in events and events[-1] == "downloaded"
    assert watch.errors == []


def test_a_prompt_with_markup_renders_as_text(stack: Stack) -> None:
    watch = ConsoleWatch()
    page = stack.page(watch)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    injected = "document.querySelectorAll('img[src=x], script:not([src])').length"
    page.goto(f"{stack.rx.url}/ui/?q=onerror")
    assert _rows(page) == [stack.jobs["xss"]]
    assert page.evaluate(injected) == 0
    page.goto(f"{stack.rx.url}/ui/jobs/{stack.jobs['xss']}")
    assert page.inner_text("#job-prompt") == XSS_PROMPT
    assert page.evaluate(injected) == 0
    page.wait_for_timeout(300)  # an onerror handler would have fired by now (a real wait: for nothing)
    assert dialogs == [] and watch.errors == []


def test_a_cross_site_form_post_is_refused(stack: Stack) -> None:
    """A page on another site posts to the dashboard in a signed-in browser: the session cookie is not
    sent (SameSite=Strict) and, were it sent, the missing CSRF token and the Origin would refuse it."""
    with contextlib.closing(stack.rx.db()) as conn:
        conn.execute(
            "INSERT INTO deliveries (idempotency_key, received_at, headers, body, state, error, applied_at) "
            "VALUES ('cross-site-target', ?, '{}', x'7b7d', 'failed', 'not an event', ?)",
            (time.time(), time.time()),
        )
        before = conn.execute(
            "SELECT state, applied_at FROM deliveries WHERE idempotency_key = 'cross-site-target'"
        ).fetchone()
    target = f"{stack.rx.url}/ui/deliveries/reprocess"

    async def attacker(request: Any) -> HTMLResponse:
        return HTMLResponse(
            f'<form id="f" method="post" action="{target}"><input name="csrf" value="guess"></form>'
            "<script>document.getElementById('f').submit()</script>"
        )

    app = Starlette(routes=[Route("/", attacker)])
    with UvicornThread(app, host="127.0.0.1") as evil:
        page = stack.page()
        other_site = evil.url.replace("127.0.0.1", "localhost")  # another site than 127.0.0.1
        page.goto(other_site)
        page.wait_for_load_state("networkidle")
        text = page.inner_text("body")
        assert page.url.startswith(f"{stack.rx.url}/ui/signin") or "refused" in text, (page.url, text[:300])
    with contextlib.closing(stack.rx.db()) as conn:
        after = conn.execute(
            "SELECT state, applied_at FROM deliveries WHERE idempotency_key = 'cross-site-target'"
        ).fetchone()
    assert tuple(after) == tuple(before)


def test_no_page_has_console_errors_or_the_token_and_phones_get_cards(stack: Stack) -> None:
    watch = ConsoleWatch()
    page = stack.page(watch)
    secrets = (API_TOKEN, stack.sim.api_key, stack.sim.secret or "")
    for path in ("/ui/", "/ui/ops", f"/ui/jobs/{stack.jobs['fox']}", f"/ui/jobs/{stack.jobs['failed']}"):
        page.goto(f"{stack.rx.url}{path}")
        page.wait_for_load_state("networkidle")
        html = page.content()
        assert not any(s and s in html for s in secrets), path
        assert not any(s and s in page.url for s in secrets)
    assert "Content policy violation" in page.inner_text(".callout")  # the upstream error of a failed job
    phone = stack.page(watch, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    header_hidden = phone.evaluate("getComputedStyle(document.querySelector('table.jobs thead')).display")
    assert header_hidden == "none"  # the table is a list of cards
    wait_until(lambda: phone.evaluate("document.fonts.status") == "loaded", what="fonts")
    screenshot(phone, "jobs-phone")
    phone.goto(f"{stack.rx.url}/ui/jobs/{stack.jobs['fox']}")
    screenshot(phone, "job-phone")
    assert watch.errors == []
