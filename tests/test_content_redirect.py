"""`GET /jobs/{id}/content?redirect=1|0` through the real receiver: with the S3 content store a
presigned URL the client fetches without any credential of ours; with the local store the video is
streamed whatever is asked (a file has no URL of its own); anything else is a one-line 400."""

from __future__ import annotations

import httpx
import pytest
from receiver_support import API_TOKEN, AUTH, receiver_settings, running_receiver
from s3_server import SeaweedS3
from support import RunningSimulator

from openrouter_video import OpenRouterVideo


@pytest.mark.parametrize("store", ["local", "s3"])
def test_content_redirect_asks_for_a_presigned_url_only_where_one_exists(
    store: str, tmp_path, simulator: RunningSimulator, request: pytest.FixtureRequest, monkeypatch
) -> None:
    overrides: dict = {}
    s3: SeaweedS3 | None = None
    if store == "s3":
        s3 = request.getfixturevalue("s3_server")
        env = request.getfixturevalue("s3_env")
        for name, value in env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        overrides["content_url"] = env["RECEIVER_CONTENT_URL"]
    settings = receiver_settings(str(tmp_path / "data"), simulator, **overrides)
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
