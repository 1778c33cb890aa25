"""Two receivers (replicas) on one PostgreSQL database, end to end over HTTP with the simulator: what
one acknowledges the other shows at once, a delivery resent to the other replica is a duplicate, and
the videos of jobs the simulator completes are downloaded once, by whichever replica claims them.

The two share one data dir for the videos (the local content store standing in for a shared one):
with PostgreSQL the data dir is not locked, it holds nothing but content.
"""

from __future__ import annotations

import contextlib

import httpx
import psycopg
from receiver_support import receiver_settings, running_receiver, signed_event, wait_until

from openrouter_video import OpenRouterVideo


def test_two_replicas_on_one_database_share_deliveries_and_downloads(
    tmp_path, simulator, pg_url: str
) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator, database_url=pg_url)
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(running_receiver(settings))
        b = stack.enter_context(running_receiver(settings))
        http = stack.enter_context(httpx.Client(timeout=10))
        for n in range(20):
            body, headers = signed_event(simulator.secret, {"id": f"jobRep{n}", "status": "in_progress"})
            assert http.post(a.webhook_url, content=body, headers=headers).status_code == 200
            # acknowledged by a, read on b at once: never "no such job"
            shown = b.get(f"/jobs/jobRep{n}")
            assert shown.status_code == 200, (n, shown.text)
            assert shown.json()["status"] == "in_progress"
            again = http.post(b.webhook_url, content=body, headers=headers)  # redelivered to the other one
            assert again.status_code == 200
        assert len(a.get("/deliveries", params={"limit": 100}).json()["deliveries"]) == 20  # one per key

        api = stack.enter_context(OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base))
        jobs = [
            api.submit(f"replica video {n}", model="google/veo-3.1", duration=4, callback_url=a.webhook_url)
            for n in range(4)
        ]
        for job in jobs:
            record = b.wait_downloaded(job.id, timeout=60)
            [output] = record["outputs"]
            sim = httpx.get(f"{simulator.admin_url}/jobs/{job.id}", timeout=30).json()["outputs"][0]
            assert output["sha256"] == sim["sha256"]
            assert [e["kind"] for e in record["events"]].count("downloaded") == 1
            for replica in (a, b):
                content = replica.get(f"/jobs/{job.id}/content")
                assert content.status_code == 200 and len(content.content) == output["bytes"]

        listed = wait_until(
            lambda: len(b.get("/jobs", params={"limit": 100}).json()["jobs"]) == 24, what="24 jobs listed"
        )
        assert listed
    with psycopg.connect(pg_url) as conn:
        # every download finished by one worker, and nobody still holds a claim
        assert conn.execute(
            "SELECT count(*) FROM outputs WHERE state != 'done' OR claimed_by IS NOT NULL"
        ).fetchone() == (0,)
