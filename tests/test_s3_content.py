"""The S3 content store against a real S3-compatible server (SeaweedFS, SigV4 credentials enforced).

Downloads go through the real client over real HTTP (the simulator, or `FaultyUpstream` for bodies
cut short, unsized, not a video) into `S3ContentStore.sink`; what the bucket then holds is read
back with a separate plain botocore client. Serving goes through a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from receiver_support import wait_until
from s3_server import SeaweedS3
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from support import RunningSimulator, UvicornThread
from upstream_faults import FaultyUpstream, mp4

from openrouter_video import AsyncOpenRouterVideo, DownloadError, TransportError
from openrouter_video.receiver.storage.s3_content import S3ContentStore, S3Unavailable, open_s3, parse_s3_url
from openrouter_video.receiver.storage.s3_upload import S3Upload

VEO = "google/veo-3.1"
MiB = 1024 * 1024


def bucket_of(env: dict[str, str]) -> str:
    return parse_s3_url(env["RECEIVER_CONTENT_URL"])[0]


def run_with_store(
    env: dict[str, str], body: Callable[[S3ContentStore], Awaitable[Any]], **options: Any
) -> Any:
    async def main() -> Any:
        store = await open_s3(env["RECEIVER_CONTENT_URL"], env, **options)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def uploads(s3: SeaweedS3, bucket: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return found


def exists(s3: SeaweedS3, bucket: str, name: str) -> bool:
    try:
        s3.client().head_object(Bucket=bucket, Key=name)
    except Exception as exc:
        if getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    return True


def object_bytes(s3: SeaweedS3, bucket: str, name: str) -> bytes:
    data: bytes = s3.client().get_object(Bucket=bucket, Key=name)["Body"].read()
    return data


def api(base: str, key: str = "sk-or-test-key", **options: Any) -> AsyncOpenRouterVideo:
    options.setdefault("retry_initial", 0.01)
    options.setdefault("retry_cap", 0.05)
    return AsyncOpenRouterVideo(api_key=key, base_url=base, **options)


def admin_output(sim: RunningSimulator, job_id: str) -> dict[str, Any]:
    output: dict[str, Any] = httpx.get(f"{sim.admin_url}/jobs/{job_id}", timeout=30).json()["outputs"][0]
    return output


# -- storing downloads -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [300_000, 20_000_000], ids=["one-put", "multipart"])
def test_a_simulator_video_stored_in_s3_has_the_simulators_sha256_and_size(
    simulator: RunningSimulator, s3_server: SeaweedS3, s3_env: dict[str, str], size: int
) -> None:
    sent: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
        sent.append({"url": str(request.url), **headers})

    async def body(store: S3ContentStore) -> Any:
        # Every request the store sends to S3, as signed: the OpenRouter key must be in none of them.
        store.client.meta.events.register("before-send.s3", record)
        async with api(simulator.api_base, simulator.api_key) as client:
            job = await client.wait(
                await client.submit(f"a fox [sim:bytes={size}]", model=VEO, duration=4), first_interval=0.02
            )
            key = store.key(job.id, 0)
            result = await client.download(job, dest=await store.sink(key))
            return job, key, result, await store.stat(key)

    job, key, result, info = run_with_store(s3_env, body)
    bucket = bucket_of(s3_env)
    expected = admin_output(simulator, job.id)
    assert result.path == f"s3://{bucket}/videos/{job.id}/0.mp4" and key == f"{job.id}/0.mp4"
    assert result.bytes == info.size == expected["size"] == size
    stored = object_bytes(s3_server, bucket, f"videos/{job.id}/0.mp4")
    assert hashlib.sha256(stored).hexdigest() == result.sha256 == expected["sha256"]
    assert uploads(s3_server, bucket) == []
    assert sent and all(h.get("Authorization", "").startswith("AWS4-HMAC-SHA256") for h in sent)
    assert not any(simulator.api_key in str(h) for h in sent)
    operations = " ".join(h["url"] for h in sent)
    assert ("uploadId=" in operations) == (size > 8 * MiB)  # a small video is one PutObject


@pytest.mark.parametrize(
    ("step", "error"),
    [("short", TransportError), ("unsized-cut", DownloadError), ("html", DownloadError)],
    ids=["length-mismatch", "cut-without-length", "not-a-video"],
)
def test_a_failed_download_leaves_no_object_and_no_upload(
    s3_server: SeaweedS3, s3_env: dict[str, str], step: str, error: type[Exception]
) -> None:
    created: list[str] = []
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobBroken1", step, size=20 * MiB)  # half of it is more than one part

        async def body(store: S3ContentStore) -> None:
            original = store.client.create_multipart_upload

            async def counting(**kwargs: Any) -> Any:
                created.append(kwargs["Key"])
                return await original(**kwargs)

            store.client.create_multipart_upload = counting
            async with api(upstream.api_base, max_retries=1) as client:
                with pytest.raises(error):
                    await client.download(job, dest=await store.sink(store.key(job.id, 0)))

        run_with_store(s3_env, body)
    bucket = bucket_of(s3_env)
    assert not exists(s3_server, bucket, "videos/jobBroken1/0.mp4")
    assert uploads(s3_server, bucket) == []
    # A cut body had sent parts (the abort path was exercised); a non-video never reached S3.
    assert len(created) == (0 if step == "html" else upstream.hits["jobBroken1"])


def test_a_cancelled_download_aborts_its_upload(s3_server: SeaweedS3, s3_env: dict[str, str]) -> None:
    bucket = bucket_of(s3_env)
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobStalled1", "stall", size=40 * MiB)  # 10 MiB, then silence

        async def body(store: S3ContentStore) -> None:
            async with api(upstream.api_base) as client:
                task = asyncio.ensure_future(client.download(job, dest=await store.sink("jobStalled1/0.mp4")))
                for _ in range(400):  # until the first part is in the bucket's uploads
                    if await asyncio.to_thread(uploads, s3_server, bucket):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the upload never started")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        run_with_store(s3_env, body)
    assert uploads(s3_server, bucket) == []
    assert not exists(s3_server, bucket, "videos/jobStalled1/0.mp4")


def test_an_upload_that_fails_at_s3_is_an_error_never_a_stored_video(
    simulator: RunningSimulator, s3_server: SeaweedS3, s3_env: dict[str, str]
) -> None:
    bucket = bucket_of(s3_env)
    simulator.config.faults.rate = 40 * MiB  # slow enough to abort the upload under it

    async def body(store: S3ContentStore) -> None:
        async with api(simulator.api_base, simulator.api_key) as client:
            job = await client.wait(
                await client.submit("a fox [sim:bytes=60000000]", model=VEO, duration=4), first_interval=0.02
            )
            task = asyncio.ensure_future(client.download(job, dest=await store.sink(store.key(job.id, 0))))
            for _ in range(400):
                if found := await asyncio.to_thread(uploads, s3_server, bucket):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the upload never started")
            # Someone else aborts it (a sweep with a wrong age, an operator): the parts still to
            # come or the completion fail, and the download must say so.
            s3_server.client().abort_multipart_upload(
                Bucket=bucket, Key=found[0]["Key"], UploadId=found[0]["UploadId"]
            )
            with pytest.raises(S3Unavailable, match="NoSuchUpload"):
                await task
            assert await store.stat(store.key(job.id, 0)) is None

    run_with_store(s3_env, body)
    assert uploads(s3_server, bucket) == []


def test_an_upload_killed_between_parts_is_swept(s3_server: SeaweedS3, s3_env: dict[str, str]) -> None:
    bucket = bucket_of(s3_env)
    before = time.time() - 5
    script = textwrap.dedent(
        """
        import asyncio, json, os, sys
        from openrouter_video.receiver.storage.s3_content import open_s3

        async def main():
            env = json.loads(sys.argv[1])
            store = await open_s3(env["RECEIVER_CONTENT_URL"], env)
            upload = await store.sink("jobKilled1/0.mp4")
            await upload.start(None, "video/mp4")
            await upload.write([os.urandom(1 << 20) for _ in range(17)])  # two parts, a third pending
            await asyncio.wait_for(asyncio.gather(*upload._tasks), 60)  # both parts stored
            print("parts sent", flush=True)
            await asyncio.sleep(120)

        asyncio.run(main())
        """
    )
    import json

    child = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(s3_env)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "parts sent"
    finally:
        child.kill()  # SIGKILL: no abort, no cleanup
        child.wait(10)
    [left] = uploads(s3_server, bucket)
    assert left["Key"] == "videos/jobKilled1/0.mp4"

    async def body(store: S3ContentStore) -> tuple[int, int]:
        # Started after `before`: a sweep of older uploads leaves it (it may be a live download).
        return await store.sweep_partials(before), await store.sweep_partials(time.time() + 5)

    assert run_with_store(s3_env, body) == (0, 1)
    assert uploads(s3_server, bucket) == []
    assert not exists(s3_server, bucket, "videos/jobKilled1/0.mp4")


def test_delete_removes_the_objects_and_uploads_in_progress_and_counts_the_bytes(
    s3_server: SeaweedS3, s3_env: dict[str, str]
) -> None:
    bucket = bucket_of(s3_env)
    raw = s3_server.client()
    raw.put_object(Bucket=bucket, Key="videos/jobDel1/0.mp4", Body=b"a" * 1000)
    raw.put_object(Bucket=bucket, Key="videos/jobDel1/1.mp4", Body=b"b" * 234)
    raw.put_object(Bucket=bucket, Key="videos/jobKeep1/0.mp4", Body=b"c" * 10)
    raw.create_multipart_upload(Bucket=bucket, Key="videos/jobDel1/2.mp4")
    raw.create_multipart_upload(Bucket=bucket, Key="videos/jobKeep1/1.mp4")

    async def body(store: S3ContentStore) -> int:
        return await store.delete(["jobDel1/0.mp4", "jobDel1/1.mp4", "jobDel1/2.mp4", "jobGone1/0.mp4"])

    assert run_with_store(s3_env, body) == 1234
    assert not exists(s3_server, bucket, "videos/jobDel1/0.mp4")
    assert exists(s3_server, bucket, "videos/jobKeep1/0.mp4")
    assert [u["Key"] for u in uploads(s3_server, bucket)] == ["videos/jobKeep1/1.mp4"]


def test_keys_never_leave_the_prefix() -> None:
    store = S3ContentStore(None, "bucket", "videos")
    assert store.key("job1", 2) == "job1/2.mp4" and store.object_name("job1/2.mp4") == "videos/job1/2.mp4"
    for job_id, index in (("../x", 0), ("a/b", 0), ("", 0), ("job1", -1), ("job1", True)):
        with pytest.raises(ValueError):
            store.key(job_id, index)  # type: ignore[arg-type]
    for key in ("../job1/0.mp4", "job1/0.mp4/x", "job1/x.mp4", "job1/00.mp4", "/job1/0.mp4", "job1/0.MP4"):
        with pytest.raises(ValueError):
            store.object_name(key)
    with pytest.raises(ValueError):
        parse_s3_url("s3://ak:secret@bucket/p")
    assert parse_s3_url("s3://my-bucket/a/b/") == ("my-bucket", "a/b")


# -- serving -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(env: dict[str, str], **options: Any) -> Iterator[str]:
    """The store's `response` behind a real uvicorn, as the receiver's API uses it:
    `GET /content/<key>` (`?redirect=1|0` to override the store's setting)."""
    holder: dict[str, S3ContentStore] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        holder["store"] = await open_s3(env["RECEIVER_CONTENT_URL"], env, **options)
        yield
        await holder["store"].close()

    async def content(request: Request) -> Response:
        redirect = {"1": True, "0": False}.get(request.query_params.get("redirect", ""))
        answer = await holder["store"].response(
            request.path_params["key"], request.headers, filename="clip.mp4", redirect=redirect
        )
        return answer if answer is not None else PlainTextResponse("no such content", 404)

    app = Starlette(routes=[Route("/content/{key:path}", content)], lifespan=lifespan)
    with UvicornThread(app) as server:
        yield f"{server.url}/content"


def test_response_serves_whole_ranges_head_and_416(s3_server: SeaweedS3, s3_env: dict[str, str]) -> None:
    video = mp4("jobServe1", 3_000_000)
    s3_server.client().put_object(Bucket=bucket_of(s3_env), Key="videos/jobServe1/0.mp4", Body=video)
    size = len(video)
    with serving(s3_env) as base, httpx.Client(timeout=30) as http:
        url = f"{base}/jobServe1/0.mp4"
        whole = http.get(url)
        assert whole.status_code == 200 and whole.content == video
        assert whole.headers["content-length"] == str(size) and whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-type"] == "video/mp4"
        assert whole.headers["content-disposition"] == 'inline; filename="clip.mp4"'
        etag = whole.headers["etag"]
        for header, start, stop in [
            ("bytes=0-99", 0, 100),
            ("bytes=1000000-1999999", 1_000_000, 2_000_000),
            ("bytes=-500", size - 500, size),
            ("bytes=2999000-", 2_999_000, size),
            ("bytes=2999990-9999999", 2_999_990, size),
        ]:
            part = http.get(url, headers={"Range": header})
            assert part.status_code == 206, header
            assert part.content == video[start:stop], header
            assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
            assert part.headers["content-length"] == str(stop - start)
        head = http.head(url)
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(size)
        head_range = http.head(url, headers={"Range": "bytes=10-19"})
        assert head_range.status_code == 206 and head_range.headers["content-length"] == "10"
        beyond = http.get(url, headers={"Range": f"bytes={size}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
        stale = http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"'})
        assert stale.status_code == 200 and len(stale.content) == size  # changed since: the whole video
        fresh = http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
        assert fresh.status_code == 206 and fresh.content == video[:10]
        assert http.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 200  # multi-range: whole
        assert http.get(f"{base}/jobNothing/0.mp4").status_code == 404


def test_a_client_leaving_mid_stream_does_not_hold_the_object_open(
    s3_server: SeaweedS3, s3_env: dict[str, str]
) -> None:
    video = mp4("jobLeave1", 30 * MiB)
    s3_server.client().put_object(Bucket=bucket_of(s3_env), Key="videos/jobLeave1/0.mp4", Body=video)
    with serving(s3_env, max_connections=2) as base:  # a pool of 2 S3 connections
        for _ in range(5):
            with httpx.stream("GET", f"{base}/jobLeave1/0.mp4", timeout=30) as response:
                assert response.status_code == 200
                next(response.iter_bytes())  # read a little, then hang up
        # Each abandoned stream gave its S3 connection back: with 2 in the pool, a leak would
        # leave none for this read.
        assert httpx.get(f"{base}/jobLeave1/0.mp4", timeout=30).content == video


def test_redirect_to_a_presigned_url_works_without_credentials_and_expires(
    s3_server: SeaweedS3, s3_env: dict[str, str]
) -> None:
    video = mp4("jobRedirect1", 500_000)
    s3_server.client().put_object(Bucket=bucket_of(s3_env), Key="videos/jobRedirect1/0.mp4", Body=video)
    env = {**s3_env, "RECEIVER_CONTENT_REDIRECT": "1", "RECEIVER_CONTENT_REDIRECT_TTL": "2"}
    with serving(env) as base:
        asked = time.time()
        answer = httpx.get(f"{base}/jobRedirect1/0.mp4", timeout=30)
        assert answer.status_code == 307 and answer.headers["cache-control"] == "no-store"
        location = answer.headers["location"]
        assert s3_server.secret_key not in location and "X-Amz-Signature=" in location
        direct = httpx.get(location, timeout=30)  # a plain GET: no credentials, no signing
        assert direct.status_code == 200 and direct.content == video
        assert direct.headers["content-disposition"] == 'inline; filename="clip.mp4"'
        unsigned = httpx.get(location.split("?")[0], timeout=30)
        assert unsigned.status_code == 403  # the bucket is not public: the signature is what lets it in
        # ?redirect=0 proxies even when the store redirects by default; a missing video is no redirect.
        assert httpx.get(f"{base}/jobRedirect1/0.mp4?redirect=0", timeout=30).content == video
        assert httpx.get(f"{base}/jobMissing1/0.mp4", timeout=30).status_code == 404

        def expired() -> bool:
            return httpx.get(location, timeout=30).status_code == 403

        wait_until(expired, timeout=20, what="the presigned URL to expire")
        # Not before its 2 s ran out (the signing time has whole seconds: counted from the second
        # the request was made in).
        assert time.time() >= math.floor(asked) + 2


# -- opening -----------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong-secret-1234567890"}, "access denied (HTTP 403)"),
        ({"AWS_ACCESS_KEY_ID": "AKIDUNKNOWN000000000"}, "access denied (HTTP 403)"),
        ({"RECEIVER_CONTENT_URL": "s3://no-such-bucket-here/videos"}, "no such bucket"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:{port}"}, "cannot connect to the S3 endpoint"),
    ],
    ids=["wrong-secret", "unknown-key", "no-bucket", "endpoint-down"],
)
def test_open_fails_with_one_line_and_no_credentials(
    s3_env: dict[str, str], change: dict[str, str], says: str
) -> None:
    env = {**s3_env, **{k: v.format(port=free_port()) for k, v in change.items()}}

    async def main() -> None:
        await open_s3(env["RECEIVER_CONTENT_URL"], env)

    started = time.monotonic()
    with pytest.raises(S3Unavailable) as caught:
        asyncio.run(main())
    message = str(caught.value)
    assert says in message and "\n" not in message
    for secret in (env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert time.monotonic() - started < 30


# -- memory ------------------------------------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The largest resident size of this process, sampled every 2 ms while running."""

    def __init__(self) -> None:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_storing_a_300mb_stream_keeps_memory_bounded(
    simulator: RunningSimulator, s3_server: SeaweedS3, s3_env: dict[str, str]
) -> None:
    size = 300_000_000

    async def body(store: S3ContentStore) -> Any:
        async with api(simulator.api_base, simulator.api_key) as client:
            job = await client.wait(
                await client.submit(f"a long fox [sim:bytes={size}]", model=VEO, duration=4),
                first_interval=0.02,
            )
            key = store.key(job.id, 0)
            sink = await store.sink(key)
            assert isinstance(sink, S3Upload)
            baseline = rss()
            started = time.monotonic()
            with PeakRss() as peak:
                result = await client.download(job, dest=sink)
            elapsed = time.monotonic() - started
            return job, result, await store.stat(key), peak.peak - baseline, elapsed

    job, result, info, growth, elapsed = run_with_store(s3_env, body)
    print(
        f"\nstored {size / 1e6:.0f} MB in {elapsed:.1f}s ({size / elapsed / 1e6:.0f} MB/s), peak RSS +{growth / MiB:.0f} MiB"
    )
    assert result.bytes == info.size == size
    assert result.sha256 == admin_output(simulator, job.id)["sha256"]
    # Parts of 8 MiB, 2 in flight, one filling, the client's two 1 MiB batches: about 30 MiB held.
    assert growth < 80 * MiB, f"peak RSS grew by {growth / MiB:.0f} MiB storing {size / MiB:.0f} MiB"
    assert uploads(s3_server, bucket_of(s3_env)) == []
