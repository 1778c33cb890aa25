"""Everything the sync and async clients share that is not I/O.

URL building and the origin rule for the API key, translation of httpx exceptions and error
responses into our error tree (the only place that happens), the retry and backoff policy, the
polling schedule of `wait()`, and the choice of download source. Writing a download to disk is
`_sink`; the checks it and the download loops use are `_mp4check`, `_storage`, `_rate` and `_urlguard`.
"""

from __future__ import annotations

import contextlib
import email.utils
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from ._exceptions import (
    STATUS_ERRORS,
    APIError,
    DownloadError,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobNotFinished,
    JobUnsuccessful,
    OpenRouterVideoError,
    RateLimitError,
    ResponseFormatError,
    SubmissionOutcomeUnknown,
    TransportError,
    UpstreamError,
    ValidationError,
)
from ._rate import RatePolicy
from ._target import AsyncDownloadTarget
from ._types import CANCELLED, COMPLETED, EXPIRED, FAILED, VideoJob, VideoModel
from ._urlguard import UrlGuard
from ._validation import check_job_id, is_loopback_host

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
# JSON calls answer in well under a second: a server that accepts but never answers is given up on
# after `read` seconds, not a minute per attempt. Content downloads get a longer read timeout (a
# slow but steady download is judged by the rate policy, not by this).
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=30.0, pool=5.0)
DEFAULT_DOWNLOAD_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=30.0, pool=5.0)
USER_AGENT = "openrouter-video/0.1"
MAX_REDIRECTS = 5
# Bytes/s below which a download is cut (after a grace period): far below any real link, so only a
# drip is cut. The receiver sets its own (RECEIVER_DOWNLOAD_MIN_RATE).
DEFAULT_MIN_RATE = 4 * 1024

ProgressCallback = Callable[[int, "int | None"], None]
StatusCallback = Callable[[VideoJob, float], None]


@dataclass(frozen=True)
class RetryEvent:
    """What `on_retry` hears before each retry: the request that failed, how, and what comes next."""

    method: str
    url: str
    error: OpenRouterVideoError
    attempt: int  # the attempt that failed, from 1
    attempts: int  # the most attempts this request may get
    delay: float  # seconds until the next one

    def describe(self) -> str:
        """One line for a person: what failed, attempt n of m, the wait."""
        problem = " ".join(str(self.error).split())
        return (
            f"{self.method} {self.url} failed ({problem}); attempt {self.attempt} of {self.attempts}, "
            f"retrying in {self.delay:.1f}s"
        )


RetryCallback = Callable[[RetryEvent], None]

_UNSUCCESSFUL: dict[str, type[JobUnsuccessful]] = {
    FAILED: JobFailed,
    CANCELLED: JobCancelled,
    EXPIRED: JobExpired,
}
# Failures where httpx never handed the request to a server: safe to retry even a paid submit.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def _refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or "connection refused" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def translate_transport_error(exc: httpx.HTTPError, *, job_id: str | None = None) -> TransportError:
    """The one place httpx exceptions become ours. `.request_sent` is False only when provably unsent;
    `.refused` is True when nothing listens at the address (the server is down or the URL is wrong)."""
    try:
        url: httpx.URL | None = exc.request.url
    except RuntimeError:
        url = None
    refused = isinstance(exc, httpx.ConnectError) and _refused(exc)
    if refused and url is not None:
        message = f"connection refused by {url.host}:{origin(url)[2]} (is the server running? is the base URL right?)"
    elif isinstance(exc, httpx.TimeoutException):
        kind = {
            httpx.ConnectTimeout: "no connection",
            httpx.ReadTimeout: "no answer",
            httpx.WriteTimeout: "could not send the request",
            httpx.PoolTimeout: "no free connection",
        }.get(type(exc), "timed out")
        message = f"{type(exc).__name__}: {kind} in time" + (f" from {url}" if url is not None else "")
    else:
        message = f"{type(exc).__name__}: {exc or 'no answer from server'}"
    error = TransportError(message, job_id=job_id)
    error.request_sent = not isinstance(exc, _NOT_SENT)
    error.refused = refused
    error.__cause__ = exc
    return error


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or nonsense."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_from_response(response: httpx.Response, *, job_id: str | None = None) -> APIError:
    """An APIError subclass for a (read) error response, with OpenRouter's code and message."""
    status = response.status_code
    code: Any = status
    message: str | None = None
    metadata: Any = None
    try:
        payload = response.json()
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            code = err.get("code", status)
            message = err.get("message") if isinstance(err.get("message"), str) else None
            metadata = err.get("metadata")
        elif isinstance(err, str):
            message = err
    if not message:
        text = response.text.strip() if response.content else ""
        message = text[:200] or (response.reason_phrase or f"HTTP {status}")
    cls = STATUS_ERRORS.get(status, UpstreamError)
    return cls(
        message,
        status_code=status,
        code=code,
        metadata=metadata,
        job_id=job_id,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def _as_timeout(value: float | httpx.Timeout | None, default: httpx.Timeout) -> httpx.Timeout:
    if isinstance(value, httpx.Timeout):
        return value
    return httpx.Timeout(value) if value is not None else default


def origin(url: httpx.URL) -> tuple[str, str, int]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return (url.scheme, url.host.lower(), port)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; honours Retry-After up to `max_retry_after`."""

    max_retries: int = 4
    initial: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0
    # A refused connection (nothing listening) is not worth a long loop: a couple of quick retries.
    refused_retries: int = 2
    refused_delay: float = 0.2

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.initial * (2**attempt))
        backoff = ceiling / 2 + random.uniform(0, ceiling / 2)
        return float(max(backoff, retry_after or 0.0))

    def plan(self, attempt: int, error: OpenRouterVideoError, *, idempotent: bool) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise `error`."""
        if attempt >= self.max_retries:
            return None
        retry_after = error.retry_after if isinstance(error, APIError) else None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        if isinstance(error, RateLimitError):
            return self.delay(attempt, retry_after)
        if isinstance(error, TransportError):
            if error.refused:
                return self.refused_delay if attempt < self.refused_retries else None
            if idempotent or not error.request_sent:
                return self.delay(attempt)
            return None
        if isinstance(error, UpstreamError) and idempotent and error.status_code >= 500:
            return self.delay(attempt, retry_after)
        return None


def submit_failure(error: OpenRouterVideoError) -> OpenRouterVideoError:
    """After retries: an ambiguous submit failure becomes SubmissionOutcomeUnknown."""
    ambiguous = (isinstance(error, TransportError) and error.request_sent) or (
        isinstance(error, UpstreamError) and error.status_code >= 500
    )
    if not ambiguous:
        return error
    unknown = SubmissionOutcomeUnknown(
        f"the submit may or may not have created a job ({error}); check your OpenRouter activity or "
        f"receiver for a new job before submitting again, or you may pay twice"
    )
    unknown.__cause__ = error
    return unknown


@dataclass
class WaitSchedule:
    """When `wait()` polls next: exponential backoff with jitter, bounded by an overall deadline."""

    timeout: float
    first_interval: float = 2.0
    max_interval: float = 30.0
    factor: float = 1.5
    started: float = field(default_factory=time.monotonic)
    last_status: str | None = None
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.first_interval

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def next_sleep(self, retry_after: float | None = None) -> float | None:
        """Seconds to sleep before the next poll, or None when the deadline has passed."""
        remaining = self.timeout - self.elapsed
        if remaining <= 0:
            return None
        base = self._next
        self._next = min(self.max_interval, self._next * self.factor)
        jittered = base * random.uniform(0.8, 1.2)
        return min(max(jittered, retry_after or 0.0), remaining)

    def observe(
        self, job: VideoJob, on_status: StatusCallback | None, raise_on_failure: bool
    ) -> VideoJob | None:
        """Take in a polled job (`on_status` hears each new status); its outcome once it is terminal."""
        if job.status != self.last_status:
            self.last_status = job.status
            if on_status:
                on_status(job, self.elapsed)
        return finish(job, raise_on_failure) if job.is_terminal else None

    def expired(self, job_id: str) -> JobNotFinished:
        return JobNotFinished(job_id, self.last_status or "unknown", self.elapsed)


def finish(job: VideoJob, raise_on_failure: bool) -> VideoJob:
    if job.status != COMPLETED and raise_on_failure:
        raise _UNSUCCESSFUL.get(job.status, JobFailed)(job)
    return job


class BaseClient:
    """Configuration and request logic; subclasses add the sync or async I/O."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        download_timeout: float | httpx.Timeout | None = None,
        on_retry: RetryCallback | None = None,
        max_retries: int = 4,
        retry_initial: float = 0.5,
        retry_cap: float = 30.0,
        models_ttl: float = 300.0,
        download_min_rate: float = DEFAULT_MIN_RATE,
        download_deadline_base: float = 60.0,
        download_rate_grace: float = 30.0,
        allow_private_urls: bool = False,
    ) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("OPENROUTER_API_KEY") or None
        raw_base = base_url or os.environ.get("OPENROUTER_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = self._check_base_url(raw_base)
        self._origin = origin(self.base_url)
        # `timeout` is for the JSON calls, `download_timeout` for content downloads.
        self.timeout = _as_timeout(timeout, DEFAULT_TIMEOUT)
        self.download_timeout = _as_timeout(download_timeout, DEFAULT_DOWNLOAD_TIMEOUT)
        # Told before each retry (the library prints nothing itself; the CLI prints a line).
        self.on_retry = on_retry
        # An overall deadline (time.monotonic()) for every request and retry, or None: requests get
        # at most the time left, and no retry starts past it. See `set_deadline`.
        self.deadline: float | None = None
        self._deadline_seconds = 0.0
        self.retry = RetryPolicy(max_retries=max_retries, initial=retry_initial, cap=retry_cap)
        self.models_ttl = models_ttl
        # A download is cut when slower than `download_min_rate` bytes/s (0: never) for longer than
        # `download_rate_grace` s, or when it outlasts `download_deadline_base` s + size / min rate.
        self.rate = RatePolicy(download_min_rate, download_deadline_base, download_rate_grace)
        # Signed URLs from events go to https on public addresses only (or the API's own host).
        self.url_guard = UrlGuard(self.base_url, allow_private=allow_private_urls)
        self._models_cache: tuple[float, dict[str, VideoModel]] | None = None

    def set_deadline(self, seconds: float | None) -> None:
        """From now on, give up on any request (retries included) `seconds` from now; None: no deadline."""
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self._deadline_seconds = seconds or 0.0

    def request_timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """`base`, with no phase longer than the time left before the deadline."""
        if self.deadline is None:
            return base
        left = max(0.001, self.deadline - time.monotonic())

        def clamp(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(
            connect=clamp(base.connect), read=clamp(base.read), write=clamp(base.write), pool=clamp(base.pool)
        )

    def plan_retry(
        self, attempt: int, error: OpenRouterVideoError, request: httpx.Request, *, idempotent: bool
    ) -> float | None:
        """The retry policy, bounded by the deadline; tells `on_retry` when there will be a retry."""
        delay = self.retry.plan(attempt, error, idempotent=idempotent)
        if delay is None:
            return None
        if self.deadline is not None and time.monotonic() + delay >= self.deadline:
            error.message = f"{error.message}; gave up at the {self._deadline_seconds:g}s deadline"
            error.args = (error.message,)
            return None
        if self.on_retry is not None:
            refused = isinstance(error, TransportError) and error.refused
            attempts = 1 + (self.retry.refused_retries if refused else self.retry.max_retries)
            self.on_retry(RetryEvent(request.method, str(request.url), error, attempt + 1, attempts, delay))
        return delay

    def __repr__(self) -> str:
        key = "set" if self.api_key else "missing"
        return f"{type(self).__name__}(base_url={str(self.base_url)!r}, api_key=<{key}>)"

    @staticmethod
    def _check_base_url(raw: str) -> httpx.URL:
        try:
            url = httpx.URL(raw.rstrip("/"))
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValidationError(
                "base_url", raw, f"OPENROUTER_BASE_URL is not a URL: {raw!r} ({exc})"
            ) from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValidationError("base_url", raw, f"OPENROUTER_BASE_URL must be an http(s) URL, got {raw!r}")
        if url.scheme == "http" and not is_loopback_host(url.host):
            raise ValidationError(
                "base_url", raw, f"refusing to send the API key over plain http to {url.host}; use https"
            )
        return url

    # -- URLs and the key ----------------------------------------------------------------------

    def url(self, path: str) -> httpx.URL:
        return httpx.URL(str(self.base_url) + path)

    def job_url(self, job_id: str) -> httpx.URL:
        return self.url(f"/videos/{quote(check_job_id(job_id), safe='')}")

    def content_url(self, job_id: str, index: int) -> httpx.URL:
        return self.url(f"/videos/{quote(check_job_id(job_id), safe='')}/content").copy_merge_params(
            {"index": index}
        )

    def is_api_origin(self, url: httpx.URL) -> bool:
        return origin(url) == self._origin

    def resolve_polling_url(self, job: VideoJob) -> httpx.URL:
        """`polling_url` may be relative or absolute; only one on the API origin is ever used."""
        if job.polling_url:
            try:
                candidate = self.base_url.join(job.polling_url)
            except (httpx.InvalidURL, TypeError):
                candidate = None
            if candidate is not None and self.is_api_origin(candidate):
                return candidate
        return self.job_url(job.id)

    def require_key(self) -> str:
        """The API key, or a ValidationError naming OPENROUTER_API_KEY before anything is sent."""
        if not self.api_key:
            raise ValidationError(
                "api_key", None, "no API key: set OPENROUTER_API_KEY (or pass api_key= to the client)"
            )
        return self.api_key

    def headers_for(self, url: httpx.URL, *, keyed: bool) -> dict[str, str]:
        """The API key goes only to the configured API origin, whatever the URL came from."""
        headers = {"User-Agent": USER_AGENT}
        if keyed and self.is_api_origin(url):
            headers["Authorization"] = f"Bearer {self.require_key()}"
        return headers

    def base_url_hint(self) -> str | None:
        """`…/api/v1` the base URL probably lacks (a bare 404 otherwise), or None when it has it."""
        path = self.base_url.path.rstrip("/")
        if path.endswith("/api/v1"):
            return None
        root = str(self.base_url.copy_with(path="/", query=None, fragment=None)).rstrip("/")
        return f"{root}/api/v1" if path in ("", "/api") else f"{str(self.base_url).rstrip('/')}/api/v1"

    def response_error(self, response: httpx.Response, *, job_id: str | None = None) -> APIError:
        """`error_from_response`, plus the likely fix when a 404 comes from a base URL without /api/v1."""
        error = error_from_response(response, job_id=job_id)
        if error.status_code == 404 and self.is_api_origin(response.request.url):
            suggestion = self.base_url_hint()
            if suggestion is not None:
                error.message = (
                    f"{error.message} at {response.request.url}; the base URL {self.base_url} has no "
                    f"/api/v1 (did you mean {suggestion}?)"
                )
        return error

    def build_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        url: httpx.URL,
        *,
        keyed: bool = True,
        json_body: Any = None,
        accept: str = "application/json",
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Request:
        headers = self.headers_for(url, keyed=keyed)
        headers["Accept"] = accept
        headers.update(extra_headers or {})
        base = self.timeout if accept == "application/json" else self.download_timeout
        return http.build_request(
            method, url, headers=headers, json=json_body, timeout=self.request_timeout(base)
        )

    def redirect_request(
        self, http: httpx.Client | httpx.AsyncClient, response: httpx.Response, keyed: bool
    ) -> httpx.Request:
        """Follow a redirect ourselves, so the key is re-decided for the new origin."""
        location = response.headers.get("location")
        if not location:
            raise ResponseFormatError(f"redirect {response.status_code} without a Location header")
        target = response.request.url.join(location)
        if target.scheme not in ("http", "https"):
            raise ResponseFormatError(f"redirect to unsupported URL {target}")
        accept = response.request.headers.get("accept", "*/*")
        carried = {k: v for k, v in response.request.headers.items() if k.lower() in ("range", "if-range")}
        return self.build_request(http, "GET", target, keyed=keyed, accept=accept, extra_headers=carried)

    # -- responses -----------------------------------------------------------------------------

    @staticmethod
    def parse_json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise ResponseFormatError(
                f"expected JSON from {response.request.method} {response.request.url.path}, "
                f"got {response.headers.get('content-type', 'no content type')}"
            ) from None

    def parse_job(self, response: httpx.Response, job_id: str | None = None) -> VideoJob:
        try:
            return VideoJob.from_api(self.parse_json(response))
        except ValueError as exc:
            raise ResponseFormatError(f"unexpected job response: {exc}", job_id=job_id) from None

    def parse_models(self, response: httpx.Response) -> dict[str, VideoModel]:
        payload = self.parse_json(response)
        entries = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            raise ResponseFormatError("models response has no 'data' list")
        models: dict[str, VideoModel] = {}
        for entry in entries:
            try:
                model = VideoModel.from_api(entry)
            except ValueError:
                continue  # One odd entry must not hide the others.
            models[model.id] = model
        self._models_cache = (time.monotonic(), models)
        return models

    def cached_models(self) -> dict[str, VideoModel] | None:
        if self._models_cache and time.monotonic() - self._models_cache[0] < self.models_ttl:
            return self._models_cache[1]
        return None


# -- downloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadSource:
    url: httpx.URL
    keyed: bool


def download_sources(client: BaseClient, job: VideoJob, index: int) -> list[DownloadSource]:
    """Where output `index` can be fetched, best first: the key-free signed URL while it is valid,
    then the keyed content URL on the API origin (never a keyed URL elsewhere)."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValidationError("index", index, "index must be a whole number >= 0")
    if job.status != COMPLETED:
        if job.is_terminal:
            raise _UNSUCCESSFUL.get(job.status, JobFailed)(job)
        raise DownloadError(f"job {job.id} is {job.status}; only completed jobs have content", job_id=job.id)
    sources: list[DownloadSource] = []
    signed = job.signed_url(index)
    if signed:
        with contextlib.suppress(httpx.InvalidURL):
            sources.append(DownloadSource(httpx.URL(signed), keyed=False))
    keyed_url: httpx.URL | None = None
    if index < len(job.unsigned_urls):
        try:
            candidate = client.base_url.join(job.unsigned_urls[index])
        except (httpx.InvalidURL, TypeError):
            candidate = None
        if candidate is not None and client.is_api_origin(candidate):
            keyed_url = candidate
    sources.append(DownloadSource(keyed_url or client.content_url(job.id, index), keyed=True))
    return sources


def download_target(
    dest: str | os.PathLike[str] | BinaryIO | None, job_id: str, index: int
) -> tuple[str, BinaryIO | None]:
    """The path a download goes to (its directory is created: the library does as told; the CLI
    refuses a missing one with `check_dest_dir`), or `("-", stream)` for a binary stream."""
    if isinstance(dest, AsyncDownloadTarget):
        # Its methods are coroutines: written to as a stream, every write would be lost unawaited.
        raise ValidationError(
            "dest", dest, "an AsyncDownloadTarget is written by AsyncOpenRouterVideo.download only"
        )
    if dest is None or isinstance(dest, (str, os.PathLike)):
        target = os.fspath(dest) if dest is not None else default_dest(job_id, index)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        return target, None
    return "-", dest


def check_dest_dir(dest: str) -> None:
    """A download goes into an existing directory: a missing one is named, never created silently."""
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise ValidationError("dest", dest, f"directory {parent} does not exist (create it first): {dest}")


def default_dest(job_id: str, index: int) -> str:
    return f"{job_id}.mp4" if index == 0 else f"{job_id}-{index}.mp4"
