"""The videos in an S3-compatible bucket: `S3ContentStore`, a `ContentStore` (see `base`).

Entry point, imported lazily by the storage factory (`receiver.storage`):

    store = await open_s3(url, env=None, *, redirect=None, presign_ttl=None,
                          part_size=8 MiB, parts_in_flight=2, max_connections=64) -> S3ContentStore
    ...
    await store.close()

- `url`: `s3://bucket/prefix` (`RECEIVER_CONTENT_URL`); objects are `<prefix>/<job_id>/<index>.mp4`.
- `env` (default `os.environ`): `AWS_ENDPOINT_URL` (an S3-compatible server: path-style addressing
  then), `AWS_REGION` (default us-east-1), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
  `AWS_SESSION_TOKEN` (without keys: botocore's usual chain, e.g. an instance role);
  `RECEIVER_CONTENT_REDIRECT=1` to answer content requests with a redirect to a presigned URL,
  `RECEIVER_CONTENT_REDIRECT_TTL` its lifetime in seconds (default 300). Keyword arguments win.
- Opening checks the bucket is reachable (HeadBucket) and raises `S3Unavailable` with one line
  (wrong credentials, no such bucket, endpoint down); no credential ever appears in an error, a
  log line or a response. Only video bytes go to S3: the OpenRouter API key stays with the
  client's download, which talks to OpenRouter, not to S3.

Why aiobotocore: it is botocore (the AWS SDK's own request layer) on asyncio, kept in step with
it: the whole S3 API, including what a store needs beyond put/get (ListMultipartUploads and
AbortMultipartUpload for the sweep, explicit upload ids, presigned URLs), SigV4 and retries as the
SDK does them, and it runs on the receiver's event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Collection, Mapping
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import Response

from openrouter_video import is_valid_job_id

from .base import ContentInfo
from .s3_serve import object_response, redirect_response
from .s3_upload import MiB, S3Unavailable, S3Upload, describe, error_code, http_status

__all__ = ["S3ContentStore", "S3Unavailable", "open_s3", "parse_s3_url"]

_KEY = re.compile(r"^([^/]+)/(0|[1-9][0-9]{0,8})\.mp4$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TRUE = ("1", "true", "yes", "on")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` → (bucket, prefix without surrounding slashes); ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"content URL must look like s3://bucket/prefix, got {url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("content URL takes no query, fragment or credentials: s3://bucket/prefix")
    if not _BUCKET.match(parts.netloc):
        raise ValueError(f"not an S3 bucket name: {parts.netloc!r}")
    return parts.netloc, parts.path.strip("/")


class S3ContentStore:
    """Videos as objects `<prefix>/<job_id>/<index>.mp4` of one bucket. Use `open_s3` to make one."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        *,
        redirect: bool = False,
        presign_ttl: int = 300,
        part_size: int = 8 * MiB,
        parts_in_flight: int = 2,
        closer: AsyncExitStack | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.redirect = redirect
        self.presign_ttl = presign_ttl
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self._closer = closer

    def __repr__(self) -> str:
        return f"S3ContentStore(s3://{self.bucket}/{self.prefix})"

    def key(self, job_id: str, index: int) -> str:
        if not is_valid_job_id(job_id) or not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"refusing unsafe key parts: job {job_id!r}, index {index!r}")
        return f"{job_id}/{index}.mp4"

    def object_name(self, key: str) -> str:
        """The object a content key names; ValueError for anything not made by `key` (no escaping
        the prefix)."""
        match = _KEY.match(key)
        if not match or not is_valid_job_id(match.group(1)):
            raise ValueError(f"not a content key: {key[:120]!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    async def sink(self, key: str) -> S3Upload:
        return S3Upload(
            self.client,
            self.bucket,
            self.object_name(key),
            part_size=self.part_size,
            in_flight=self.parts_in_flight,
        )

    async def _head(self, name: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = await self.client.head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if http_status(exc) == 404:
                return None
            raise S3Unavailable(describe(exc, "HeadObject")) from None
        return head

    async def stat(self, key: str) -> ContentInfo | None:
        head = await self._head(self.object_name(key))
        if head is None:
            return None
        return ContentInfo(size=int(head["ContentLength"]), etag=head.get("ETag"))

    async def response(
        self, key: str, headers: Mapping[str, str], *, filename: str, redirect: bool | None = None
    ) -> Response | None:
        """Serve `key` (see `s3_serve`): proxied with Range, or with `redirect` (default: the store's
        setting) a 307 to a presigned URL valid `presign_ttl` seconds. None: no such object."""
        name = self.object_name(key)
        head = await self._head(name)
        if head is None:
            return None
        if self.redirect if redirect is None else redirect:
            return await redirect_response(self.client, self.bucket, name, filename, self.presign_ttl)
        return object_response(self.client, self.bucket, name, head, headers, filename)

    async def delete(self, keys: list[str]) -> int:
        """Delete the objects (and abort uploads in progress to them); the bytes freed."""
        names = {self.object_name(key) for key in keys}
        if not names:
            return 0
        limit = asyncio.Semaphore(16)  # a retention prune may delete thousands: not all at once

        async def head(name: str) -> dict[str, Any] | None:
            async with limit:
                return await self._head(name)

        sizes = await asyncio.gather(*(head(name) for name in names))
        freed = sum(int(head["ContentLength"]) for head in sizes if head is not None)
        ordered = sorted(names)
        for at in range(0, len(ordered), 1000):  # DeleteObjects takes up to 1000 keys
            batch = [{"Key": name} for name in ordered[at : at + 1000]]
            try:
                answer = await self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except Exception as exc:
                raise S3Unavailable(describe(exc, "DeleteObjects")) from None
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise S3Unavailable(
                    f"DeleteObjects failed for {len(answer['Errors'])} keys: {first.get('Code')}"
                )
        await self._abort_uploads(lambda upload: upload["Key"] in names)
        return freed

    async def sweep_partials(self, older_than: float | None = None, keep: Collection[str] = ()) -> int:
        """Abort the multipart uploads under the prefix initiated before `older_than` (a Unix time;
        None: all of them), but those of the content keys in `keep` (downloads in progress). Each is
        an interrupted download: never completed, never served."""
        kept = {self.object_name(key) for key in keep}
        return await self._abort_uploads(
            lambda upload: (
                upload["Key"] not in kept
                and (older_than is None or upload["Initiated"].timestamp() < older_than)
            )
        )

    async def _abort_uploads(self, chosen: Any) -> int:
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads") or []:
                    if not chosen(upload):
                        continue
                    try:
                        await self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except Exception as exc:
                        if error_code(exc) != "NoSuchUpload":  # another replica's sweep was first
                            raise
                    aborted += 1
        except S3Unavailable:
            raise
        except Exception as exc:
            raise S3Unavailable(describe(exc, "sweep of multipart uploads")) from None
        return aborted

    def free_bytes(self) -> int | None:
        return None  # an object store does not fill up like a disk

    async def close(self) -> None:
        if self._closer is not None:
            closer, self._closer = self._closer, None
            await closer.aclose()


async def open_s3(
    url: str,
    env: Mapping[str, str] | None = None,
    *,
    redirect: bool | None = None,
    presign_ttl: int | None = None,
    part_size: int = 8 * MiB,
    parts_in_flight: int = 2,
    max_connections: int = 64,
) -> S3ContentStore:
    """Open the bucket of `url` with the endpoint, region and credentials of `env` (see the module
    docstring); raises ValueError for a malformed setting, S3Unavailable when S3 cannot be used."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    env = os.environ if env is None else env
    bucket, prefix = parse_s3_url(url)
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError(f"AWS_ENDPOINT_URL must be an http(s) URL, got {endpoint!r}")
    if redirect is None:
        redirect = env.get("RECEIVER_CONTENT_REDIRECT", "").strip().lower() in _TRUE
    if presign_ttl is None:
        raw = env.get("RECEIVER_CONTENT_REDIRECT_TTL", "300")
        if not raw.isdigit() or not 1 <= int(raw) <= 7 * 86400:
            raise ValueError(f"RECEIVER_CONTENT_REDIRECT_TTL must be 1 to 604800 seconds, got {raw!r}")
        presign_ttl = int(raw)
    config = AioConfig(
        signature_version="s3v4",  # presigned URLs too (some servers refuse SigV2's)
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"max_attempts": 3, "mode": "standard"},
        # No CRC32 of every part on top of SigV4's signed payload sha256 (over http) or TLS (https):
        # the bytes are checked twice already, and our own sha256 of the whole video is checked.
        request_checksum_calculation="when_required",
        connect_timeout=5,
        read_timeout=60,
        # Shared by uploads (downloads x parts in flight) and the videos being served.
        max_pool_connections=max_connections,
    )
    stack = AsyncExitStack()
    client = await stack.enter_async_context(
        get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            config=config,
        )
    )
    store = S3ContentStore(
        client,
        bucket,
        prefix,
        redirect=redirect,
        presign_ttl=presign_ttl,
        part_size=part_size,
        parts_in_flight=parts_in_flight,
        closer=stack,
    )
    try:
        await client.head_bucket(Bucket=bucket)
    except Exception as exc:
        await store.close()
        raise S3Unavailable(_open_error(exc, bucket, endpoint)) from None
    return store


def _open_error(exc: BaseException, bucket: str, endpoint: str | None) -> str:
    where = f"S3 bucket {bucket!r} at {_safe(endpoint)}"
    status = http_status(exc)
    if status in (401, 403):
        return f"{where}: access denied (HTTP {status}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if status == 404:
        return f"{where}: no such bucket"
    if status == 301:
        return f"{where}: the bucket is in another region than AWS_REGION"
    return f"{where}: {describe(exc, 'HeadBucket')}"


def _safe(endpoint: str | None) -> str:
    """The endpoint as shown in errors: scheme, host and port only (never userinfo or a query)."""
    if not endpoint:
        return "AWS (no AWS_ENDPOINT_URL)"
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
