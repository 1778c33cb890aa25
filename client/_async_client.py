"""`AsyncOpenRouterVideo`: the asyncio I/O around `BaseClient`'s logic, as `_client` has it in sync."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any, BinaryIO

import httpx

from ._base import (
    MAX_REDIRECTS,
    BaseClient,
    DownloadSource,
    ProgressCallback,
    StatusCallback,
    WaitSchedule,
    download_sources,
    download_target,
    submit_failure,
    translate_transport_error,
)
from ._client import _TRANSIENT, VIDEO_ACCEPT, JobRef, _job_id
from ._exceptions import (
    APIError,
    DownloadError,
    InsufficientStorageError,
    OpenRouterVideoError,
    ResponseFormatError,
    ValidationError,
)
from ._rate import Watchdog
from ._sink import (
    Batcher,
    DownloadSink,
    TargetSink,
    content_span,
    discard_partial,
    range_headers,
    resume_point,
    stream_started,
)
from ._target import AsyncDownloadTarget
from ._types import DownloadResult, VideoJob, VideoModel
from ._urlguard import resolve
from ._validation import (
    build_submit_body,
    check_capabilities,
    normalize_model_id,
    unknown_model_error,
)


class AsyncOpenRouterVideo(BaseClient):
    """Asynchronous twin of `OpenRouterVideo`: the same methods, awaited."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(api_key, base_url, **options)
        self._http = httpx.AsyncClient(transport=transport, timeout=self.timeout, follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncOpenRouterVideo:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(
        self,
        make_request: Callable[[], httpx.Request],
        *,
        idempotent: bool = True,
        stream: bool = False,
        keyed: bool = True,
        job_id: str | None = None,
        guard: bool = False,
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = make_request()
            try:
                response = await self._send_following(
                    request, stream=stream, keyed=keyed, guard=guard, job_id=job_id
                )
                if response.status_code < 400:
                    return response
                await response.aread()
                await response.aclose()
                error: OpenRouterVideoError = self.response_error(response, job_id=job_id)
            except httpx.HTTPError as exc:
                error = translate_transport_error(exc, job_id=job_id)
            delay = self.plan_retry(attempt, error, request, idempotent=idempotent)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            attempt += 1

    async def _send_following(
        self,
        request: httpx.Request,
        *,
        stream: bool,
        keyed: bool,
        guard: bool = False,
        job_id: str | None = None,
    ) -> httpx.Response:
        for _ in range(MAX_REDIRECTS + 1):
            if guard:  # every hop of a download, redirects included
                await self._check_destination(request.url, job_id)
            response = await self._http.send(request, stream=stream)
            if guard:
                await self._check_peer(request.url, response, job_id)
            if not (response.is_redirect and request.method == "GET"):
                return response
            await response.aclose()
            request = self.redirect_request(self._http, response, keyed)
        raise ResponseFormatError(f"more than {MAX_REDIRECTS} redirects from {request.url.host}")

    async def _get(self, url: httpx.URL, *, job_id: str | None = None, keyed: bool = True) -> httpx.Response:
        return await self._send(
            lambda: self.build_request(self._http, "GET", url, keyed=keyed), job_id=job_id, keyed=keyed
        )

    async def _check_destination(self, url: httpx.URL, job_id: str | None) -> None:
        if self.url_guard.check_url(url, job_id=job_id):
            answers = await asyncio.to_thread(resolve, url)
            self.url_guard.check_resolved(url, answers, job_id=job_id)

    async def _check_peer(self, url: httpx.URL, response: httpx.Response, job_id: str | None) -> None:
        try:
            self.url_guard.check_peer(url, response, job_id=job_id)
        except OpenRouterVideoError:
            await response.aclose()
            raise

    async def models(self, *, refresh: bool = False) -> list[VideoModel]:
        cached = None if refresh else self.cached_models()
        if cached is None:
            cached = self.parse_models(await self._get(self.url("/videos/models"), keyed=bool(self.api_key)))
        return list(cached.values())

    async def model(self, model_id: str) -> VideoModel:
        model_id = normalize_model_id(model_id)
        await self.models()
        cached = self.cached_models() or {}
        if model_id not in cached:
            raise unknown_model_error(model_id, cached)
        return cached[model_id]

    async def submit(
        self, prompt: str | None = None, *, model: str, validate: bool = True, **fields: Any
    ) -> VideoJob:
        self.require_key()
        body = build_submit_body(model=model, prompt=prompt, **fields)
        if validate:
            check_capabilities(body, await self.model(body["model"]))
        url = self.url("/videos")
        try:
            response = await self._send(
                lambda: self.build_request(self._http, "POST", url, json_body=body), idempotent=False
            )
            return self.parse_job(response)
        except OpenRouterVideoError as exc:
            failure = submit_failure(exc)
            if failure is exc:
                raise
            raise failure from exc

    async def get(self, job: JobRef) -> VideoJob:
        job_id = _job_id(job)
        url = self.resolve_polling_url(job) if isinstance(job, VideoJob) else self.job_url(job_id)
        return self.parse_job(await self._get(url, job_id=job_id), job_id)

    async def wait(
        self,
        job: JobRef,
        *,
        timeout: float = 1200.0,
        first_interval: float = 2.0,
        max_interval: float = 30.0,
        on_status: StatusCallback | None = None,
        raise_on_failure: bool = True,
    ) -> VideoJob:
        job_id = _job_id(job)
        schedule = WaitSchedule(timeout, first_interval, max_interval)
        current = job if isinstance(job, VideoJob) else None
        while True:
            retry_after = None
            try:
                current = await self.get(current or job_id)
            except _TRANSIENT as exc:
                retry_after = getattr(exc, "retry_after", None)
            else:
                if (outcome := schedule.observe(current, on_status, raise_on_failure)) is not None:
                    return outcome
            delay = schedule.next_sleep(retry_after)
            if delay is None:
                raise schedule.expired(job_id)
            await asyncio.sleep(delay)

    async def download(
        self,
        job: JobRef,
        index: int = 0,
        dest: str | os.PathLike[str] | BinaryIO | AsyncDownloadTarget | None = None,
        *,
        progress: ProgressCallback | None = None,
        keep_free: int | None = None,
    ) -> DownloadResult:
        """As `OpenRouterVideo.download`; `dest` may also be an `AsyncDownloadTarget` (an object store
        upload, say): streamed into with the same checks, never resumed, committed only once they
        all passed (`keep_free` does not apply to it)."""
        if isinstance(dest, AsyncDownloadTarget):
            return await self._download_to_target(job, index, dest, progress)
        target, stream = download_target(dest, _job_id(job), index)
        if not isinstance(job, VideoJob):
            job = await self.get(job)
        sources = download_sources(self, job, index)
        for position, source in enumerate(sources):
            try:
                return await self._download_from(source, job.id, target, progress, keep_free, stream)
            except (ValidationError, InsufficientStorageError):
                raise
            except OpenRouterVideoError:
                if position == len(sources) - 1 or (stream is not None and stream_started(stream)):
                    raise
        raise AssertionError("unreachable: download_sources always yields a keyed source")

    async def _download_from(
        self,
        source: DownloadSource,
        job_id: str,
        dest: str,
        progress: ProgressCallback | None,
        keep_free: int | None,
        stream: BinaryIO | None = None,
    ) -> DownloadResult:
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            offset, etag = resume_point(dest, job_id) if stream is None else (0, None)
            try:
                response = await self._send(
                    functools.partial(
                        self.build_request,
                        self._http,
                        "GET",
                        source.url,
                        keyed=source.keyed,
                        accept=VIDEO_ACCEPT,
                        extra_headers=range_headers(offset, etag),
                    ),
                    stream=True,
                    keyed=source.keyed,
                    job_id=job_id,
                    guard=True,
                )
            except APIError as exc:
                if offset and exc.status_code == 416:  # the kept part is no use: start again
                    discard_partial(dest)
                    continue
                raise
            span = content_span(response, offset)
            if span is None:
                await response.aclose()
                if not offset:
                    raise DownloadError(f"unexpected partial content for job {job_id}", job_id=job_id)
                discard_partial(dest)
                continue
            try:
                sink = await asyncio.to_thread(
                    functools.partial(
                        DownloadSink,
                        dest,
                        job_id,
                        span[1],
                        response.headers.get("content-type"),
                        keep_free,
                        start=span[0],
                        etag=response.headers.get("etag"),
                        stream=stream,
                    )
                )
            except BaseException:
                await response.aclose()
                raise
            rate = self.rate.guard(
                None if sink.expected is None else sink.expected - span[0], loop.time(), job_id=job_id
            )
            # The watchdog cuts a read that stalls completely; `feed` cuts a drip at its next byte.
            watchdog = Watchdog(rate)
            batcher = Batcher()
            writing: asyncio.Future[None] | None = None
            try:
                # Disk writes, hashing and the final fsync run in a thread: the event loop (and the
                # webhook endpoint beside it) never waits on the disk. Double-buffered as in the sync client.
                async for chunk in response.aiter_bytes():
                    rate.feed(len(chunk), loop.time())
                    batch = batcher.add(chunk)
                    if batch is not None:
                        if writing is not None:
                            await writing
                            if progress:
                                progress(sink.written, sink.expected)
                        writing = asyncio.ensure_future(asyncio.to_thread(sink.write_batch, batch))
                if writing is not None:
                    await writing
                    if progress:
                        progress(sink.written, sink.expected)
                await asyncio.to_thread(sink.write_batch, batcher.take())
                if progress:
                    progress(sink.written, sink.expected)
                watchdog.disarm()
                return await asyncio.to_thread(sink.commit)
            except httpx.HTTPError as exc:
                watchdog.disarm()
                await _settle(writing)
                await asyncio.to_thread(sink.keep, batcher.take())  # what arrived, for the resume
                sink.abort()
                error = translate_transport_error(exc, job_id=job_id)
                delay = self.plan_retry(attempt, error, response.request, idempotent=True)
                if delay is None or (stream is not None and sink.written):
                    raise error from exc
                await asyncio.sleep(delay)
                attempt += 1
            except BaseException as exc:
                too_slow = watchdog.translate(exc)
                await _settle(writing)
                sink.abort()
                if too_slow is not None:
                    raise too_slow from None
                raise
            finally:
                await response.aclose()

    async def _download_to_target(
        self, job: JobRef, index: int, target: AsyncDownloadTarget, progress: ProgressCallback | None
    ) -> DownloadResult:
        if not isinstance(job, VideoJob):
            job = await self.get(job)
        sources = download_sources(self, job, index)
        for position, source in enumerate(sources):
            try:
                return await self._download_into(source, job.id, target, progress)
            except ValidationError:
                raise
            except OpenRouterVideoError:
                if position == len(sources) - 1:
                    raise
        raise AssertionError("unreachable: download_sources always yields a keyed source")

    async def _download_into(
        self,
        source: DownloadSource,
        job_id: str,
        target: AsyncDownloadTarget,
        progress: ProgressCallback | None,
    ) -> DownloadResult:
        """One source into a target: every attempt from byte 0 (a target cannot be resumed)."""
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            response = await self._send(
                functools.partial(
                    self.build_request, self._http, "GET", source.url, keyed=source.keyed, accept=VIDEO_ACCEPT
                ),
                stream=True,
                keyed=source.keyed,
                job_id=job_id,
                guard=True,
            )
            span = content_span(response, 0)
            if span is None:  # a 206 to a request without Range
                await response.aclose()
                raise DownloadError(f"unexpected partial content for job {job_id}", job_id=job_id)
            sink = TargetSink(target, job_id, span[1], response.headers.get("content-type"))
            rate = self.rate.guard(sink.expected, loop.time(), job_id=job_id)
            watchdog = Watchdog(rate)
            batcher = Batcher()
            writing: asyncio.Future[None] | None = None
            try:
                await sink.start()
                # As for a file: one batch goes to the target while the next one is received.
                async for chunk in response.aiter_bytes():
                    rate.feed(len(chunk), loop.time())
                    batch = batcher.add(chunk)
                    if batch is not None:
                        if writing is not None:
                            await writing
                            if progress:
                                progress(sink.written, sink.expected)
                        writing = asyncio.ensure_future(sink.write_batch(batch))
                if writing is not None:
                    await writing
                await sink.write_batch(batcher.take())
                if progress:
                    progress(sink.written, sink.expected)
                watchdog.disarm()
                return await sink.commit()
            except httpx.HTTPError as exc:
                watchdog.disarm()
                await _settle(writing)
                await sink.abort()
                error = translate_transport_error(exc, job_id=job_id)
                delay = self.plan_retry(attempt, error, response.request, idempotent=True)
                if delay is None:
                    raise error from exc
                await asyncio.sleep(delay)
                attempt += 1
            except BaseException as exc:
                too_slow = watchdog.translate(exc)
                await _settle(writing)
                await sink.abort()
                if too_slow is not None:
                    raise too_slow from None
                raise
            finally:
                await response.aclose()


async def _settle(writing: asyncio.Future[None] | None) -> None:
    """Let an in-flight write finish before the file is closed and removed."""
    if writing is not None and not writing.done():
        with contextlib.suppress(BaseException):
            await asyncio.shield(writing)
