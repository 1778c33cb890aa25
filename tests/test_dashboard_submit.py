"""The dashboard's Submit page against a real receiver that knows its own URL (RECEIVER_PUBLIC_URL) and
the simulator: in Debian's Chromium (Playwright) the form offers only the chosen model's choices, the
review shows the client's own cost estimate, and the paid submit lands on its job, which turns
completed live, one upstream job however often the final form is posted. Over plain HTTP: another
site's post pays nothing, a prompt with `<script>` is text, errors stand next to their field, a
refusal lands on the submission, and without RECEIVER_PUBLIC_URL the page says why it is missing.

Without Chromium or playwright the browser tests skip (one line says which); with CI=true they fail.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from backends import Backend
from dashboard_support import ConsoleWatch, chromium, csrf_of, http_session, screenshot, sign_in
from receiver_support import (
    API_TOKEN,
    RunningReceiver,
    public_receiver,
    receiver_settings,
    running_receiver,
)
from support import RunningSimulator, fast_simulator_config, running_simulator
from token_support import create_token

from openrouter_video import OpenRouterVideo
from openrouter_video._pricing import estimate_cost
from openrouter_video._validation import build_submit_body

MODEL = "google/veo-3.1"
NO_AUDIO_MODEL = "minimax/hailuo-2.3"  # other durations, one resolution, no audio
TOKEN_PRICED = "bytedance/seedance-2.0"  # priced per video token: no estimate
CHOICES = {"model": MODEL, "duration": "6", "resolution": "1080p", "aspect_ratio": "9:16", "audio": "on"}
XSS_PROMPT = '<script>alert(1)</script> and "><img src=x onerror=alert(1)> in a prompt'


def upstream(sim: RunningSimulator) -> tuple[int, int]:
    """(submit requests the simulator received, jobs it made)."""
    stats = httpx.get(f"{sim.admin_url}/stats", timeout=10).json()
    return stats["requests"].get("submits", 0), stats["jobs"]


def _options(page: Any, select: str) -> list[str]:
    return page.eval_on_selector_all(f"{select} option", "os => os.map(o => o.value)")


def _expected_body(prompt: str, choices: dict[str, str]) -> dict[str, Any]:
    return build_submit_body(
        model=choices["model"],
        prompt=prompt,
        duration=int(choices["duration"]),
        resolution=choices["resolution"],
        aspect_ratio=choices["aspect_ratio"],
        generate_audio=choices["audio"] == "on",
    )


# -- in the browser ----------------------------------------------------------------------------


@dataclass
class Stack:
    sim: RunningSimulator
    rx: RunningReceiver
    browser: Any
    api: OpenRouterVideo

    def page(self, watch: ConsoleWatch, **context: Any) -> Any:
        page = watch.attach(self.browser.new_context(**context).new_page())
        sign_in(page, self.rx.url, API_TOKEN)
        return page


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Slow enough that the job page is seen pending before it turns completed.
    config = fast_simulator_config(pending_seconds=1.5, in_progress_seconds=1.5)
    with (
        running_simulator(config) as sim,
        tempfile.TemporaryDirectory() as data_dir,
        public_receiver(receiver_settings(data_dir, sim)) as rx,
        OpenRouterVideo(api_key=sim.api_key, base_url=sim.api_base) as api,
        chromium() as browser,
    ):
        yield Stack(sim, rx, browser, api)


def test_the_form_offers_only_the_chosen_models_choices(stack: Stack) -> None:
    watch = ConsoleWatch()
    page = stack.page(watch)
    page.click("nav >> text=Submit")
    page.wait_for_url(f"{stack.rx.url}/ui/submit")
    page.select_option("#model", MODEL)
    page.wait_for_selector(f"#model-fields[data-model='{MODEL}']")
    veo = stack.api.model(MODEL)
    assert _options(page, "#duration") == [str(d) for d in sorted(veo.supported_durations or ())]
    assert _options(page, "#resolution") == list(veo.supported_resolutions or ())
    assert _options(page, "#aspect_ratio") == list(veo.supported_aspect_ratios or ())
    assert _options(page, "#audio") == ["on", "off"]
    assert page.is_hidden("#model-show")  # the script swaps the fields itself
    screenshot(page, "submit")

    page.fill("#prompt", "kept across a change of model")
    page.evaluate("window.__notReloaded = true")
    page.select_option("#model", NO_AUDIO_MODEL)
    page.wait_for_selector(f"#model-fields[data-model='{NO_AUDIO_MODEL}']")
    hailuo = stack.api.model(NO_AUDIO_MODEL)
    assert _options(page, "#duration") == [str(d) for d in sorted(hailuo.supported_durations or ())]
    assert _options(page, "#resolution") == list(hailuo.supported_resolutions or ())
    assert _options(page, "#aspect_ratio") == list(hailuo.supported_aspect_ratios or ())
    assert page.query_selector("#audio") is None  # it cannot make audio: not offered
    assert page.input_value("#prompt") == "kept across a change of model"
    assert page.evaluate("window.__notReloaded") is True
    assert page.url == f"{stack.rx.url}/ui/submit?model={NO_AUDIO_MODEL.replace('/', '%2F')}"
    assert watch.errors == []


def test_without_javascript_the_server_renders_the_chosen_models_fields(stack: Stack) -> None:
    watch = ConsoleWatch()
    page = stack.page(watch, java_script_enabled=False)
    page.goto(f"{stack.rx.url}/ui/submit?model={MODEL}")
    page.fill("#prompt", "a lighthouse")
    page.select_option("#model", NO_AUDIO_MODEL)
    page.click("#model-show")
    page.wait_for_selector(f"#model-fields[data-model='{NO_AUDIO_MODEL}']")
    hailuo = stack.api.model(NO_AUDIO_MODEL)
    assert _options(page, "#duration") == [str(d) for d in sorted(hailuo.supported_durations or ())]
    assert page.input_value("#prompt") == "a lighthouse"
    assert watch.errors == []


def test_review_shows_the_estimate_then_one_paid_submit_lands_on_the_job_live(stack: Stack) -> None:
    watch = ConsoleWatch()
    page = stack.page(watch)
    prompt = "a red fox trotting through fresh snow at dawn, low sun, long shadows"
    page.goto(f"{stack.rx.url}/ui/submit?model={MODEL}")
    for name in ("duration", "resolution", "aspect_ratio", "audio"):
        page.select_option(f"#{name}", CHOICES[name])
    page.fill("#prompt", prompt)
    page.click("#review")
    page.wait_for_url(f"{stack.rx.url}/ui/submit/review")

    body = _expected_body(prompt, CHOICES)
    expected = estimate_cost(stack.api.model(MODEL), body)
    assert expected.usd is not None
    assert float(page.get_attribute("#estimate", "data-usd") or "nan") == pytest.approx(expected.usd)
    assert f"${expected.usd:.2f}" in page.inner_text("#estimate")
    assert json.loads(page.inner_text("#review-request")) == body  # the exact request
    assert f"${expected.usd:.2f}" in page.inner_text("#pay")
    screenshot(page, "submit-review")
    assert upstream(stack.sim) == (0, 0)  # nothing paid by reviewing

    posted = page.eval_on_selector("#pay-form", "f => new URLSearchParams(new FormData(f)).toString()")
    page.dblclick("#pay")  # a double-click: still one submission
    page.wait_for_url(re.compile(r".*/ui/jobs/[^/?]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    assert "Submitted to google/veo-3.1" in page.inner_text(".flash")
    assert page.inner_text("#job-status") in ("pending", "in_progress")
    page.evaluate("window.__notReloaded = true")

    # The same final form posted once more (a resent form): the same job, nothing paid again.
    again = page.evaluate(
        "body => fetch('/ui/submit/pay', {method: 'POST', body: new URLSearchParams(body),"
        " credentials: 'same-origin'}).then(r => r.text().then(t => [r.url, t]))",
        posted,
    )
    assert again[0] == f"{stack.rx.url}/ui/jobs/{job_id}" and "nothing was paid twice" in again[1]
    assert upstream(stack.sim) == (1, 1)

    page.wait_for_function(
        "() => document.getElementById('job-status').textContent === 'completed'", timeout=20000
    )
    assert page.evaluate("window.__notReloaded") is True
    record = stack.rx.job(job_id)
    assert record is not None and record["prompt"] == prompt and record["model"] == MODEL
    assert upstream(stack.sim) == (1, 1)
    assert watch.errors == []


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def public(simulator: RunningSimulator, tmp_path) -> Iterator[RunningReceiver]:
    with public_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx:
        yield rx


def _review(client: httpx.Client, **values: str) -> httpx.Response:
    csrf = csrf_of(client.get(f"/ui/submit?model={values.get('model', MODEL)}").text)
    return client.post("/ui/submit/review", data={"csrf": csrf, **values})


def _pay_form(review: httpx.Response) -> dict[str, str]:
    form = review.text[review.text.index('id="pay-form"') :]
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form)
    return {name: _unescape(value) for name, value in fields}


def _unescape(text: str) -> str:
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&#34;", '"'), ("&#39;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def test_another_sites_post_is_refused_and_pays_nothing(public, simulator) -> None:
    with http_session(public.url, API_TOKEN) as client:
        review = _review(client, **CHOICES, prompt="a fox")
        assert review.status_code == 200, review.text[:500]
        form = _pay_form(review)
        evil = client.post("/ui/submit/pay", data=form, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and "another site" in evil.text
        cross = client.post("/ui/submit/pay", data=form, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        forged = client.post("/ui/submit/pay", data={**form, "csrf": "forged"})
        assert forged.status_code == 403 and "security token" in forged.text
        assert upstream(simulator) == (0, 0)
        assert public.get(f"/submissions/{form['key']}").status_code == 404  # nothing recorded either

        paid = client.post("/ui/submit/pay", data=form)  # the genuine form still works, once
        assert paid.status_code == 303 and paid.headers["location"].startswith("/ui/jobs/")
        assert upstream(simulator) == (1, 1)


def test_a_prompt_with_markup_is_text_on_the_review(public) -> None:
    with http_session(public.url, API_TOKEN) as client:
        review = _review(client, **CHOICES, prompt=XSS_PROMPT)
        assert review.status_code == 200
        assert "<script>alert" not in review.text and "<img src=x" not in review.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in review.text
        assert _pay_form(review)["prompt"] == XSS_PROMPT  # carried to the paid submit unchanged
        change = client.post("/ui/submit", data=_pay_form(review))  # "Change": the form, filled in again
        assert change.status_code == 200 and 'id="submit-form"' in change.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in change.text and "<script>alert" not in change.text
        assert '<option value="9:16" selected>' in change.text
        assert API_TOKEN not in review.text and "sk-or-" not in review.text


def test_errors_stand_next_to_their_field_one_line_each(public, simulator) -> None:
    with http_session(public.url, API_TOKEN) as client:
        answer = _review(client, **{**CHOICES, "duration": "7"}, prompt="a fox")
        [error] = re.findall(r'<p class="field-error" id="duration-error">([^<]*)</p>', answer.text)
        assert error == "duration 7 is not supported by google/veo-3.1 (allowed: 4, 6, 8)"
        answer = _review(client, **CHOICES, seed="12x", prompt="a fox")
        assert (
            "seed must be a whole number, got &#39;12x&#39;" in answer.text
            and 'id="seed-error"' in answer.text
        )
        answer = _review(client, **CHOICES, prompt="   ")
        assert 'id="prompt-error"' in answer.text
        answer = _review(client, **{**CHOICES, "model": "google/veo-9"}, prompt="a fox")
        assert 'id="model-error"' in answer.text and "unknown video model" in answer.text
        no_estimate = _review(client, model=TOKEN_PRICED, duration="5", prompt="a fox")
        assert 'data-usd=""' in no_estimate.text and "priced per video token" in no_estimate.text
        assert upstream(simulator) == (0, 0)


def test_a_refusal_lands_on_the_submission_with_the_upstream_error(public, simulator) -> None:
    simulator.config.faults.update({"submit_errors": [{"status": 402, "count": 1}]})
    with http_session(public.url, API_TOKEN) as client:
        form = _pay_form(_review(client, **CHOICES, prompt="a fox"))
        answer = client.post("/ui/submit/pay", data=form)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/submissions/sub_")
        page = client.get(answer.headers["location"])
        assert 'id="submission-state"' in page.text and ">refused<" in page.text
        assert "HTTP 402" in page.text and 'id="submission-error"' in page.text
        again = client.post("/ui/submit/pay", data=form)  # the same key: the same refusal, not a new try
        assert again.headers["location"] == answer.headers["location"]
        assert upstream(simulator) == (1, 0)


def test_without_a_public_url_the_nav_says_why_and_the_page_is_unavailable(simulator, tmp_path) -> None:
    with (
        running_receiver(receiver_settings(str(tmp_path / "data"), simulator)) as rx,
        http_session(rx.url, API_TOKEN) as client,
    ):
        jobs = client.get("/ui/")
        assert 'id="nav-submit"' in jobs.text and "RECEIVER_PUBLIC_URL" in jobs.text
        assert 'href="/ui/submit"' not in jobs.text
        page = client.get("/ui/submit")
        assert page.status_code == 503 and "RECEIVER_PUBLIC_URL is not set" in page.text
        csrf = csrf_of(jobs.text)
        pay = client.post("/ui/submit/pay", data={"csrf": csrf, "key": "ui-x", **CHOICES, "prompt": "a fox"})
        assert pay.status_code == 503
        assert upstream(simulator) == (0, 0)


def test_a_named_admin_tokens_submit_is_its_own(public, simulator) -> None:
    ops = create_token(Backend("sqlite"), public.settings.data_dir, "ops", "admin")
    with http_session(public.url, ops) as client:
        form = _pay_form(_review(client, **CHOICES, prompt="a fox for ops"))
        paid = client.post("/ui/submit/pay", data=form)
        assert paid.status_code == 303, paid.text[:500]
    # Idempotency-Keys are per token: the key is in ops's namespace, not the built-in admin's.
    assert public.get(f"/submissions/{form['key']}").status_code == 404
    with httpx.Client(base_url=public.url, headers={"Authorization": f"Bearer {ops}"}, timeout=10) as rx:
        mine = rx.get(f"/submissions/{form['key']}").json()
        assert mine["owner"] == "ops" and mine["job"]["owner"] == "ops"
    assert upstream(simulator) == (1, 1)
