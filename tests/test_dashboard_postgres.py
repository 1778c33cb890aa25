"""The dashboard end to end on the replicas' stores: records in PostgreSQL, videos in S3 (SeaweedFS).

Two `openrouter-video serve` processes share one database and one bucket. The browser (Debian's
Chromium) watches replica A while the simulator's webhooks go to replica B, so what A's open pages
show live can only come from the store's change feed, not from A's own applier. The job's video is
downloaded into the bucket by whichever replica claims it and plays in A's job page, seekable
(served from S3 with Range).
"""

from __future__ import annotations

import contextlib
import os

import httpx
from dashboard_support import ConsoleWatch, chromium, sign_in
from receiver_support import API_TOKEN, AUTH, ReceiverProcess, receiver_settings, wait_until

from openrouter_video import OpenRouterVideo

SECONDS = 4


def test_replica_a_shows_live_what_replica_b_received_and_plays_the_video_from_s3(
    tmp_path, simulator, pg_url: str, s3_env: dict[str, str]
) -> None:
    # The API redirects content to presigned URLs here; the dashboard must still stream it (its CSP
    # plays only what the receiver itself serves).
    env = {**s3_env, "RECEIVER_DATABASE_URL": pg_url, "RECEIVER_CONTENT_REDIRECT": "1"}
    with contextlib.ExitStack() as stack:
        a, b = (
            ReceiverProcess(receiver_settings(str(tmp_path / name), simulator), extra_env=env).start()
            for name in ("a", "b")
        )
        stack.callback(a.stop)
        stack.callback(b.stop)
        browser = stack.enter_context(chromium())  # closed first: its live streams end before A stops
        watch = ConsoleWatch()
        table = watch.attach(browser.new_context().new_page())
        sign_in(table, a.url, API_TOKEN)
        table.wait_for_function("() => document.getElementById('live-indicator').dataset.state === 'on'")
        table.evaluate("window.__notReloaded = true")

        api = stack.enter_context(OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base))
        prompt = "[sim:pending=1.5, in_progress=1.5] a lighthouse kept in two replicas"
        job = api.submit(
            prompt, model="google/veo-3.1", duration=SECONDS, callback_url=f"{b.url}/webhooks/openrouter"
        )
        registered = httpx.post(
            f"{b.url}/jobs", json={"id": job.id, "prompt": prompt}, headers=AUTH, timeout=10
        )
        assert registered.status_code in (200, 201), registered.text

        page = watch.attach(table.context.new_page())
        page.goto(f"{a.url}/ui/jobs/{job.id}")
        page.wait_for_function("() => document.getElementById('live-indicator').dataset.state === 'on'")
        page.evaluate("window.__notReloaded = true")
        # Live on A, from B's webhooks: the status, then the downloaded video, without a reload.
        page.wait_for_function(
            "() => document.getElementById('job-status').textContent === 'completed'", timeout=30000
        )
        video = page.wait_for_selector("video", timeout=30000)
        page.wait_for_function("() => document.querySelector('video').readyState >= 1", timeout=15000)
        assert abs(page.evaluate("document.querySelector('video').duration") - SECONDS) < 0.2
        page.evaluate("v => { v.muted = true; v.currentTime = 3.0; return v.play(); }", video)
        page.wait_for_function("() => document.querySelector('video').currentTime >= 3.0")
        table.wait_for_function(
            "id => { const badge = document.querySelector(`tr[data-job='${id}'] .badge`);"
            " return badge !== null && badge.textContent === 'completed'; }",
            arg=job.id,
            timeout=30000,
        )
        assert (
            page.evaluate("window.__notReloaded") is True and table.evaluate("window.__notReloaded") is True
        )

        # The video is in the bucket, not on either replica's disk; the operations page says so.
        record = wait_until(
            lambda: httpx.get(f"{a.url}/jobs/{job.id}", headers=AUTH, timeout=10).json(), what="the record"
        )
        assert record["outputs"][0]["state"] == "done" and record["source"] == "webhook"
        for replica in ("a", "b"):
            assert not os.path.exists(tmp_path / replica / "videos" / job.id)
        api_content = httpx.get(f"{a.url}/jobs/{job.id}/content", headers=AUTH, timeout=10)
        assert api_content.status_code == 307  # while the page above played it streamed
        page.goto(f"{a.url}/ui/ops")
        assert "no local disk" in page.inner_text("#h-disk")
        assert watch.errors == []
