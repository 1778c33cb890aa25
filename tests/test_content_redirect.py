"""`GET /jobs/{id}/content?redirect=1|0` through the real receiver: with the S3 content store a
presigned URL the client fetches without any credential of ours; with the local store the video is
streamed whatever is asked (a file has no URL of its own); anything else is a one-line 400."""

from __future__ import annotations

import httpx
from backends import Backend
from receiver_support import API_TOKEN, AUTH, running_receiver
from support import RunningSimulator

from openrouter_video import OpenRouterVideo


def test_content_redirect_asks_for_a_presigned_url_only_where_one_exists(
    backend: Backend, tmp_path, simulator: RunningSimulator
) -> None:
    s3 = backend.s3  # None: the local videos folder
    settings = backend.settings(str(tmp_path / "data"), simulator)
    with (
        running_receiver(settings) as rx,
        OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api,
    ):
        job = api.submit("a redirect", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        [output] = rx.wait_downloaded(job.id, timeout=60)["outputs"]
        streamed = rx.get(f"/jobs/{job.id}/content")
        assert streamed.status_code == 200 and len(streamed.content) == output["bytes"]

        asked = rx.get(f"/jobs/{job.id}/content", params={"redirect": "1"})
        if s3 is None:
            assert asked.status_code == 200 and asked.content == streamed.content
        else:
            assert asked.status_code == 307
            location = asked.headers["location"]
            assert API_TOKEN not in location and s3.secret_key not in location
            assert simulator.api_key not in location
            direct = httpx.get(location, timeout=30)  # no Authorization: the signature lets it in
            assert direct.status_code == 200 and direct.content == streamed.content
        assert rx.get(f"/jobs/{job.id}/content", params={"redirect": "0"}).content == streamed.content

        bad = httpx.get(f"{rx.url}/jobs/{job.id}/content?redirect=yes", headers=AUTH, timeout=10)
        assert bad.status_code == 400 and "redirect must be 1" in bad.json()["error"]["message"]
