"""The storage seam: fallback polls claimed under a lease by two workers on one store, content keys
(migration 5 and the local content store), and the factory's one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import sys
import time

import httpx
import pytest
from click.testing import CliRunner
from receiver_support import AUTH, open_test_stores, receiver_settings, running_receiver

from openrouter_video import OpenRouterVideo
from openrouter_video.receiver._datadir import StartupError
from openrouter_video.receiver.cli import serve
from openrouter_video.receiver.cli_local import jobs as jobs_command
from openrouter_video.receiver.settings import Secret, Settings, SettingsError
from openrouter_video.receiver.storage import open_stores
from openrouter_video.receiver.storage.local_content import LocalContentStore
from openrouter_video.receiver.storage.sqlite._db import MIGRATIONS, connect, migrate

# -- fallback polls claimed under a lease ----------------------------------------------------------


def test_two_workers_never_poll_one_job_while_its_claim_is_live(tmp_path) -> None:
    async def main() -> None:
        a = await open_test_stores("sqlite", tmp_path, worker="A", lease=30)
        b = await open_test_stores("sqlite", tmp_path, worker="B", lease=30)
        try:
            now = time.time()
            for n in range(4):
                await a.jobs.register(f"jobPoll{n}", model=None, prompt=None, first_poll_at=now - 1)
            first = {c.job_id for c in await a.polls.claim(now, 3)}
            second = {c.job_id for c in await b.polls.claim(now, 10)}
            assert len(first) == 3 and len(second) == 1 and not first & second
            assert await a.polls.claim(now + 29, 10) == [] == await b.polls.claim(now + 29, 10)
            # B's outcome for a job A holds is dropped while A's claim is live.
            taken = sorted(first)[0]
            await b.polls.schedule(taken, now - 1)
            assert await b.polls.claim(now + 1, 10) == []
            # The holder's outcome frees the job; the next poll is due when it says.
            await a.polls.schedule(taken, now + 5)
            assert [c.job_id for c in await b.polls.claim(now + 6, 10)] == [taken]
            assert (await b.jobs.get(taken)) is not None
            # A stopped (died): once its leases ran out, B takes its jobs over, each attempt counted once.
            later = {c.job_id: c for c in await b.polls.claim(now + 31, 10)}
            assert set(later) == (first - {taken}) | second  # B's own first claim ran out too
            assert all(c.poll_attempts == 0 for c in later.values())
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_terminal_job_is_never_claimed_for_a_poll(tmp_path) -> None:
    from openrouter_video import VideoJob

    async def main() -> None:
        stores = await open_test_stores("sqlite", tmp_path)
        try:
            now = time.time()
            await stores.jobs.register("jobDone1", model=None, prompt=None, first_poll_at=now - 1)
            await stores.polls.apply_poll(VideoJob.from_api({"id": "jobDone1", "status": "failed"}))
            assert await stores.polls.claim(now, 10) == []
        finally:
            await stores.close()

    asyncio.run(main())


def test_a_restart_under_the_data_dir_lock_frees_the_previous_runs_poll_claims(tmp_path) -> None:
    async def main() -> None:
        now = time.time()
        old = await open_test_stores("sqlite", tmp_path, worker="old")
        await old.jobs.register("jobPoll9", model=None, prompt=None, first_poll_at=now - 1)
        assert [c.job_id for c in await old.polls.claim(now, 1)] == ["jobPoll9"]
        await old.close()  # killed mid-poll
        joined = await open_test_stores("sqlite", tmp_path, worker="replica")
        assert await joined.polls.claim(now, 1) == []  # a replica waits for the lease
        await joined.close()
        alone = await open_test_stores("sqlite", tmp_path, worker="new", exclusive=True)
        try:
            assert [c.job_id for c in await alone.polls.claim(now, 1)] == ["jobPoll9"]
        finally:
            await alone.close()

    asyncio.run(main())


# -- content keys ----------------------------------------------------------------------------------


def _store_at_version_4(path: str) -> sqlite3.Connection:
    conn = connect(path)
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    return conn


def test_migration_5_turns_local_paths_into_content_keys_and_the_content_is_served(
    tmp_path, simulator
) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    videos = settings.videos_dir
    video = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40
    os.makedirs(os.path.join(videos, "jobOld1"))
    with open(os.path.join(videos, "jobOld1", "0.mp4"), "wb") as fh:
        fh.write(video)
    with contextlib.closing(_store_at_version_4(settings.db_path)) as conn:
        conn.execute(
            "INSERT INTO jobs (id, status, created_at, first_seen_at, updated_at, terminal_at, source) "
            "VALUES ('jobOld1', 'completed', 1, 1, 1, 1, 'webhook')"
        )
        rows = [
            (0, os.path.join(videos, "jobOld1", "0.mp4")),  # what the local store wrote
            (1, "/somewhere/else.mp4"),  # not a path the store wrote: no key
            (2, None),  # never downloaded
        ]
        for index, path in rows:
            conn.execute(
                "INSERT INTO outputs (job_id, idx, state, next_attempt_at, path, bytes, sha256, updated_at) "
                "VALUES ('jobOld1', ?, ?, 1, ?, ?, NULL, 1)",
                (index, "done" if path else "failed", path, len(video) if path else None),
            )
        assert migrate(conn) == len(MIGRATIONS)
        keys = dict(conn.execute("SELECT idx, content_key FROM outputs ORDER BY idx").fetchall())
        columns = {r[1] for r in conn.execute("PRAGMA table_info(outputs)")}
    assert keys == {0: "jobOld1/0.mp4", 1: None, 2: None}
    assert "path" not in columns and {"content_key"} <= columns
    with running_receiver(settings) as rx:
        whole = rx.get("/jobs/jobOld1/content")
        assert whole.status_code == 200 and whole.content == video
        ranged = httpx.get(f"{rx.url}/jobs/jobOld1/content", headers={**AUTH, "Range": "bytes=4-11"})
        assert ranged.status_code == 206 and ranged.content == b"ftypisom"
        missing = rx.get("/jobs/jobOld1/content", params={"index": 1})
        assert missing.status_code == 404 and "recorded as downloaded" in missing.json()["error"]["message"]
    shown = CliRunner().invoke(jobs_command, ["show", "jobOld1", "--json", "--data-dir", settings.data_dir])
    assert shown.exit_code == 0, shown.output
    assert '"path": "' + os.path.join(os.path.abspath(videos), "jobOld1", "0.mp4") + '"' in shown.output


def test_the_local_content_store_keeps_keys_inside_its_root_and_deletes_partials_too(tmp_path) -> None:
    store = LocalContentStore(str(tmp_path / "videos"))
    assert store.key("jobX1", 2) == "jobX1/2.mp4"
    for bad in (("../etc", 0), ("jobX1", -1)):
        with pytest.raises(ValueError):
            store.key(*bad)
    for bad_key in ("../x/0.mp4", "jobX1/0.mp4/..", "jobX1/01.mp4", "/etc/passwd"):
        with pytest.raises(ValueError):
            store.path(bad_key)

    async def main() -> None:
        path = await store.sink("jobX1/0.mp4")
        os.makedirs(os.path.dirname(path))
        for name, size in ((path, 100), (path + ".part", 7), (path + ".part.json", 3)):
            with open(name, "wb") as fh:
                fh.write(b"x" * size)
        assert (await store.stat("jobX1/0.mp4")).size == 100
        assert await store.delete(["jobX1/0.mp4"]) == 110
        assert await store.stat("jobX1/0.mp4") is None and not os.path.exists(os.path.dirname(path))
        os.makedirs(os.path.dirname(path))
        with open(path + ".part", "wb") as fh:
            fh.write(b"y")
        assert await store.sweep_partials(older_than=time.time() - 3600) == 0  # too recent
        assert await store.sweep_partials() == 1

    asyncio.run(main())


# -- the factory -----------------------------------------------------------------------------------

ENV = {"OPENROUTER_API_KEY": "sk-or-test", "OPENROUTER_WEBHOOK_SECRET": "whsec-test"}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RECEIVER_DATABASE_URL", "mysql://u:hunter2@db/x", "must be postgresql://"),
        ("RECEIVER_DATABASE_URL", "/var/lib/receiver.db", "must be postgresql://"),
        ("RECEIVER_CONTENT_URL", "https://bucket.example/x", "must be s3://bucket/prefix"),
        ("RECEIVER_CONTENT_URL", "s3:///prefix", "must be s3://bucket/prefix"),
    ],
)
def test_a_bad_store_url_is_one_line_that_shows_no_password(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**ENV, name: value})
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_serve_refuses_a_bad_store_url_in_one_line(tmp_path) -> None:
    env = {**ENV, "RECEIVER_API_TOKEN": "t" * 20, "RECEIVER_DATABASE_URL": "mysql://db/x"}
    result = CliRunner().invoke(serve, ["--data-dir", str(tmp_path), "--port", "0"], env=env)
    assert result.exit_code == 2 and "RECEIVER_DATABASE_URL must be postgresql://" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("setting", "module", "message"),
    [
        ("database_url", "postgres", "PostgreSQL store not available: install openrouter-video[postgres]"),
        ("content_url", "s3_content", "S3 content store not available: install openrouter-video[s3]"),
    ],
)
def test_a_backend_whose_extra_is_missing_is_named_in_one_line(
    tmp_path, monkeypatch, setting, module, message
):
    # As if the extra's module (or its driver) could not be imported.
    monkeypatch.setitem(sys.modules, f"openrouter_video.receiver.storage.{module}", None)
    url = {"database_url": "postgresql://db.invalid/x", "content_url": "s3://bucket/prefix"}[setting]
    settings = Settings(
        api_key=Secret("k"), webhook_secrets=(Secret("s"),), data_dir=str(tmp_path), **{setting: url}
    )
    with pytest.raises(StartupError) as caught:
        asyncio.run(open_stores(settings, exclusive=True))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    # Nothing was left held: the data dir can be served right after.
    local = Settings(api_key=Secret("k"), webhook_secrets=(Secret("s"),), data_dir=str(tmp_path))

    async def reopen() -> None:
        stores = await open_stores(local, exclusive=True)
        await stores.close()

    asyncio.run(reopen())


def test_a_reading_command_on_a_data_dir_without_a_store_says_so(tmp_path) -> None:
    result = CliRunner().invoke(jobs_command, ["list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no receiver database at" in result.output
    assert not os.path.exists(tmp_path / "receiver.db") and not os.path.exists(tmp_path / "videos")


# -- the receiver on an S3 content store -----------------------------------------------------------


def test_a_receiver_on_s3_stores_serves_and_deletes_a_video_by_its_content_key(
    tmp_path, simulator, s3_env, s3_server, monkeypatch
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, s3_env[name])
    settings = receiver_settings(
        str(tmp_path / "data"), simulator, content_url=s3_env["RECEIVER_CONTENT_URL"]
    )
    bucket = s3_env["RECEIVER_CONTENT_URL"].split("/")[2]
    with (
        running_receiver(settings) as rx,
        OpenRouterVideo(api_key=simulator.api_key, base_url=simulator.api_base) as api,
    ):
        job = api.submit("a lighthouse", model="google/veo-3.1", duration=4, callback_url=rx.webhook_url)
        record = rx.wait_downloaded(job.id)
        expected = httpx.get(f"{simulator.admin_url}/jobs/{job.id}", timeout=30).json()["outputs"][0][
            "sha256"
        ]
        assert record["outputs"][0]["sha256"] == expected
        objects = s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        assert [o["Key"] for o in objects] == [f"videos/{job.id}/0.mp4"]
        assert not os.path.exists(settings.videos_dir)  # nothing of the video on local disk
        content = rx.get(f"/jobs/{job.id}/content")
        assert content.status_code == 200 and hashlib.sha256(content.content).hexdigest() == expected
        ranged = httpx.get(f"{rx.url}/jobs/{job.id}/content", headers={**AUTH, "Range": "bytes=4-11"})
        assert ranged.status_code == 206 and ranged.content == b"ftypisom"
        deleted = httpx.delete(f"{rx.url}/jobs/{job.id}", headers=AUTH, timeout=10).json()
        assert deleted["freed_bytes"] == len(content.content)
        assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
