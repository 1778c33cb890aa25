"""`OpenRouterVideo`, the synchronous client: the I/O around `BaseClient`'s logic (`_async_client` has
the same with asyncio)."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import time
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
from ._exceptions import (
    APIError,
    DownloadError,
    InsufficientStorageError,
    OpenRouterVideoError,
    RateLimitError,
    ResponseFormatError,
    TransportError,
    UpstreamError,
    ValidationError,
)
from ._sink import (
    Batcher,
    DownloadSink,
    content_span,
    discard_partial,
    range_headers,
    resume_point,
    stream_started,
)
from ._types import DownloadResult, VideoJob, VideoModel
from ._urlguard import resolve
from ._validation import (
    build_submit_body,
    check_capabilities,
    check_job_id,
    normalize_model_id,
    unknown_model_error,
)

VIDEO_ACCEPT = "video/mp4, video/*;q=0.9, */*;q=0.1"
_TRANSIENT = (RateLimitError, UpstreamError, TransportError)

JobRef = VideoJob | str


def _job_id(job: JobRef) -> str:
    return job.id if isinstance(job, VideoJob) else check_job_id(job)


class OpenRouterVideo(BaseClient):
    """Synchronous client for OpenRouter's video API.

    >>> with OpenRouterVideo() as client:          # OPENROUTER_API_KEY from the environment
    ...     job = client.submit("a cat surfing", model="google/veo-3.1", duration=4)
    ...     job = client.wait(job)
    ...     client.download(job, dest="cat.mp4")
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(api_key, base_url, **options)
        self._http = httpx.Client(transport=transport, timeout=self.timeout, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenRouterVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport with retries ----------------------------------------------------------------

    def _send(
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
                response = self._send_following(
                    request, stream=stream, keyed=keyed, guard=guard, job_id=job_id
                )
                if response.status_code < 400:
                    return response
                response.read()
                response.close()
                error: OpenRouterVideoError = self.response_error(response, job_id=job_id)
            except httpx.HTTPError as exc:
                error = translate_transport_error(exc, job_id=job_id)
            delay = self.plan_retry(attempt, error, request, idempotent=idempotent)
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1

    def _send_following(
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
                self._check_destination(request.url, job_id)
            response = self._http.send(request, stream=stream)
            if guard:
                self._check_peer(request.url, response, job_id)
            if not (response.is_redirect and request.method == "GET"):
                return response
            response.close()
            request = self.redirect_request(self._http, response, keyed)
        raise ResponseFormatError(f"more than {MAX_REDIRECTS} redirects from {request.url.host}")

    def _get(self, url: httpx.URL, *, job_id: str | None = None, keyed: bool = True) -> httpx.Response:
        return self._send(
            lambda: self.build_request(self._http, "GET", url, keyed=keyed), job_id=job_id, keyed=keyed
        )

    def _check_destination(self, url: httpx.URL, job_id: str | None) -> None:
        if self.url_guard.check_url(url, job_id=job_id):
            self.url_guard.check_resolved(url, resolve(url), job_id=job_id)

    def _check_peer(self, url: httpx.URL, response: httpx.Response, job_id: str | None) -> None:
        try:
            self.url_guard.check_peer(url, response, job_id=job_id)
        except OpenRouterVideoError:
            response.close()
            raise

    # -- API -----------------------------------------------------------------------------------

    def models(self, *, refresh: bool = False) -> list[VideoModel]:
        """All video models (`GET /videos/models`), cached for `models_ttl` seconds."""
        cached = None if refresh else self.cached_models()
        if cached is None:
            cached = self.parse_models(self._get(self.url("/videos/models"), keyed=bool(self.api_key)))
        return list(cached.values())

    def model(self, model_id: str) -> VideoModel:
        model_id = normalize_model_id(model_id)
        self.models()
        cached = self.cached_models() or {}
        if model_id not in cached:
            raise unknown_model_error(model_id, cached)
        return cached[model_id]

    def submit(
        self, prompt: str | None = None, *, model: str, validate: bool = True, **fields: Any
    ) -> VideoJob:
        """Submit a job (`POST /videos`). Fields: see `openrouter_video._validation.build_submit_body`.

        With `validate` (the default) the request is checked against the model's capabilities
        first and nothing is sent if it would be rejected. A submit is retried only when the
        request provably never reached OpenRouter, or on 429; any ambiguous failure raises
        `SubmissionOutcomeUnknown` instead of risking a second paid job.
        """
        self.require_key()
        body = build_submit_body(model=model, prompt=prompt, **fields)
        if validate:
            check_capabilities(body, self.model(body["model"]))
        url = self.url("/videos")
        try:
            response = self._send(
                lambda: self.build_request(self._http, "POST", url, json_body=body), idempotent=False
            )
            return self.parse_job(response)
        except OpenRouterVideoError as exc:
            failure = submit_failure(exc)
            if failure is exc:
                raise
            raise failure from exc

    def get(self, job: JobRef) -> VideoJob:
        """The job's current state (`GET /videos/{id}`, or its `polling_url` on the API origin)."""
        job_id = _job_id(job)
        url = self.resolve_polling_url(job) if isinstance(job, VideoJob) else self.job_url(job_id)
        return self.parse_job(self._get(url, job_id=job_id), job_id)

    def wait(
        self,
        job: JobRef,
        *,
        timeout: float = 1200.0,
        first_interval: float = 2.0,
        max_interval: float = 30.0,
        on_status: StatusCallback | None = None,
        raise_on_failure: bool = True,
    ) -> VideoJob:
        """Poll until the job is terminal. Never resubmits.

        Returns the completed job. `failed`/`cancelled`/`expired` raise `JobFailed`/`JobCancelled`/
        `JobExpired` (or are returned when `raise_on_failure=False`). At the deadline raises
        `JobNotFinished` carrying the job id. Transient errors (429, 5xx, transport) while waiting
        only delay the next poll, honouring Retry-After.
        """
        job_id = _job_id(job)
        schedule = WaitSchedule(timeout, first_interval, max_interval)
        current = job if isinstance(job, VideoJob) else None
        while True:
            retry_after = None
            try:
                current = self.get(current or job_id)
            except _TRANSIENT as exc:
                retry_after = getattr(exc, "retry_after", None)
            else:
                if (outcome := schedule.observe(current, on_status, raise_on_failure)) is not None:
                    return outcome
            delay = schedule.next_sleep(retry_after)
            if delay is None:
                raise schedule.expired(job_id)
            time.sleep(delay)

    def download(
        self,
        job: JobRef,
        index: int = 0,
        dest: str | os.PathLike[str] | BinaryIO | None = None,
        *,
        progress: ProgressCallback | None = None,
        keep_free: int | None = None,
    ) -> DownloadResult:
        """Stream output `index` to `dest` (via `dest.part`, fsynced, renamed). Memory stays flat.

        Uses the job's signed URL without the key while it is valid, else the content URL on the
        API origin with the key. Checks the content is a video of the announced length (or, with
        no length announced, a complete MP4). With `keep_free`, raises InsufficientStorageError
        instead of leaving fewer than `keep_free` bytes free on the destination's filesystem.
        An interrupted download keeps `dest.part` and the next one resumes it with a Range request
        when the server allows (else downloads it all again). `dest`'s directory must exist. `dest`
        may also be a writable binary stream (e.g. stdout): the bytes go straight to it.
        """
        target, stream = download_target(dest, _job_id(job), index)
        if not isinstance(job, VideoJob):
            job = self.get(job)
        sources = download_sources(self, job, index)
        for position, source in enumerate(sources):
            try:
                return self._download_from(source, job.id, target, progress, keep_free, stream)
            except (ValidationError, InsufficientStorageError):
                raise
            except OpenRouterVideoError:
                if position == len(sources) - 1 or (stream is not None and stream_started(stream)):
                    raise

        raise AssertionError("unreachable: download_sources always yields a keyed source")

    def _download_from(
        self,
        source: DownloadSource,
        job_id: str,
        dest: str,
        progress: ProgressCallback | None,
        keep_free: int | None,
        stream: BinaryIO | None = None,
    ) -> DownloadResult:
        attempt = 0
        while True:
            offset, etag = resume_point(dest, job_id) if stream is None else (0, None)
            try:
                response = self._send(
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
                response.close()
                if not offset:
                    raise DownloadError(f"unexpected partial content for job {job_id}", job_id=job_id)
                discard_partial(dest)
                continue
            try:
                sink = DownloadSink(
                    dest,
                    job_id,
                    span[1],
                    response.headers.get("content-type"),
                    keep_free,
                    start=span[0],
                    etag=response.headers.get("etag"),
                    stream=stream,
                )
            except BaseException:
                response.close()
                raise
            # Fed per chunk: a slow drip is cut when its next byte arrives; a total stall is left
            # to the read timeout (a blocking read cannot be interrupted from here).
            rate = self.rate.guard(
                None if sink.expected is None else sink.expected - span[0], time.monotonic(), job_id=job_id
            )
            batcher = Batcher()
            writing: concurrent.futures.Future[None] | None = None
            try:
                # Double buffering: one batch is written and hashed in the worker thread while the
                # next one is received. At most two batches are in memory.
                with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="download-writer") as worker:
                    for chunk in response.iter_bytes():
                        rate.feed(len(chunk), time.monotonic())
                        batch = batcher.add(chunk)
                        if batch is not None:
                            if writing is not None:
                                writing.result()
                                if progress:
                                    progress(sink.written, sink.expected)
                            writing = worker.submit(sink.write_batch, batch)
                    if writing is not None:
                        writing.result()
                        if progress:
                            progress(sink.written, sink.expected)
                    sink.write_batch(batcher.take())
                if progress:
                    progress(sink.written, sink.expected)
                return sink.commit()
            except httpx.HTTPError as exc:
                sink.keep(batcher.take())  # what arrived before the cut, for the resume
                sink.abort()
                error = translate_transport_error(exc, job_id=job_id)
                delay = self.plan_retry(attempt, error, response.request, idempotent=True)
                if delay is None or (stream is not None and sink.written):
                    raise error from exc
                time.sleep(delay)
                attempt += 1
            except BaseException:
                sink.abort()
                raise
            finally:
                response.close()
