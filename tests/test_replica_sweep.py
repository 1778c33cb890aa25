"""The sweep of abandoned partial downloads that replicas run once a lease (receiver/workers/fetcher.py).

A partial (a multipart upload, a `.part` file) is abandoned when no live claim holds its output: the
content stores skip the keys they are told to keep, and both record stores say which outputs are
claimed under a lease that has not run out, whoever the worker. End to end (a replica SIGKILLed
half-way through a download, its upload swept while the others' live ones stay) in test_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from openrouter_video.receiver.storage.local_content import LocalContentStore
from openrouter_video.receiver.storage.s3_content import open_s3
from openrouter_video.receiver.storage.sqlite import open_sqlite
from openrouter_video.receiver.storage.sqlite._db import connect

OUTPUT_COLUMNS = "job_id, idx, state, next_attempt_at, updated_at, claimed_by, lease_until"


def test_s3_sweep_keeps_the_uploads_of_live_claims(s3_server, s3_env) -> None:
    bucket = s3_env["RECEIVER_CONTENT_URL"].removeprefix("s3://").split("/")[0]
    raw = s3_server.client()
    for job in ("jobLive1", "jobDead1"):
        raw.create_multipart_upload(Bucket=bucket, Key=f"videos/{job}/0.mp4")

    async def main() -> tuple[int, int]:
        store = await open_s3(s3_env["RECEIVER_CONTENT_URL"], s3_env)
        try:
            kept = ["jobLive1/0.mp4"]
            too_recent = await store.sweep_partials(time.time() - 3600, keep=kept)
            return too_recent, await store.sweep_partials(time.time() + 5, keep=kept)
        finally:
            await store.close()

    assert asyncio.run(main()) == (0, 1)
    left = raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in left] == ["videos/jobLive1/0.mp4"]
    raw.abort_multipart_upload(Bucket=bucket, Key=left[0]["Key"], UploadId=left[0]["UploadId"])


def test_local_sweep_keeps_the_partials_of_live_claims(tmp_path) -> None:
    store = LocalContentStore(str(tmp_path / "videos"))
    for job in ("jobLive2", "jobDead2"):
        path = store.path(f"{job}/0.mp4")
        os.makedirs(os.path.dirname(path))
        for name in (path + ".part", path + ".part.json"):
            with open(name, "wb") as fh:
                fh.write(b"x")
    assert asyncio.run(store.sweep_partials(time.time() + 5, keep=["jobLive2/0.mp4"])) == 2
    assert os.path.exists(store.path("jobLive2/0.mp4") + ".part")
    assert os.path.exists(store.path("jobLive2/0.mp4") + ".part.json")
    assert not os.path.exists(store.path("jobDead2/0.mp4") + ".part")


def _outputs(now: float) -> list[tuple]:
    return [
        ("jobA", 0, "downloading", now, now, "host:1:aa", now + 30),  # live
        ("jobA", 1, "downloading", now, now, "host:2:bb", now - 1),  # its worker died: lease ran out
        ("jobB", 0, "pending", now, now, None, None),
        ("jobC", 0, "done", now, now, None, None),
    ]


def test_live_claims_on_sqlite(tmp_path) -> None:
    path = str(tmp_path / "receiver.db")
    stores = open_sqlite(path, worker="host:3:cc")
    now = time.time()
    with contextlib.closing(connect(path)) as conn, conn:
        conn.executemany(
            f"INSERT INTO outputs ({OUTPUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", _outputs(now)
        )

    async def main() -> list[tuple[str, int]]:
        try:
            return await stores.downloads.live_claims(now)
        finally:
            await stores.close()

    assert asyncio.run(main()) == [("jobA", 0)]


def test_live_claims_on_postgres(pg_url) -> None:
    import psycopg

    from openrouter_video.receiver.storage.postgres import open_postgres

    now = time.time()

    async def main() -> list[tuple[str, int]]:
        stores = await open_postgres(pg_url, worker="host:3:cc", listen=False)
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn, conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO outputs ({OUTPUT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    _outputs(now),
                )
            return await stores.downloads.live_claims(now)
        finally:
            await stores.close()

    assert asyncio.run(main()) == [("jobA", 0)]
