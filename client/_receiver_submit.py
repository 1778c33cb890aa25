"""Submitting through the receiver (`POST /jobs` with an Idempotency-Key): the shared rules, and the
async client (`AsyncReceiverClient`; the sync one is `ReceiverClient`).

    from openrouter_video import AsyncReceiverClient
    async with AsyncReceiverClient("https://hooks.example.com", token) as rx:
        submission = await rx.submit("a red fox in fresh snow", model="google/veo-3.1", duration=4)
        print(submission["job_id"], submission["job"]["status"])

The request is built and checked here first (`build_submit_body`: local image files become `data:`
URLs; the receiver reads no files), then sent under one Idempotency-Key, generated per call unless
given. A retry reuses that key, so it can never pay twice: the receiver answers what the first try
came to. Retried: no answer (a timeout, a dropped connection) and a 503 (the receiver sent nothing).
An outcome the receiver itself does not know (`outcome_unknown`) raises `SubmissionOutcomeUnknown`
naming the submission: `submission(id)` shows when the job's webhook ties it to its job.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from ._base import error_from_response, translate_transport_error
from ._exceptions import (
    IdempotencyKeyReused,
    OpenRouterVideoError,
    ResponseFormatError,
    SubmissionOutcomeUnknown,
    ValidationError,
)
from ._receiver_wait import DEFAULT_WAIT_TIMEOUT, WaitPlan, wait_async
from ._validation import build_submit_body

__all__ = ["AsyncReceiverClient", "SubmitPlan", "new_idempotency_key"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
SUBMIT_TIMEOUT = httpx.Timeout(90.0, connect=5.0)  # the receiver waits up to 60 s for OpenRouter
SUBMIT_RETRIES = 4


def new_idempotency_key() -> str:
    return f"orv-{uuid.uuid4()}"


@dataclass
class SubmitPlan:
    """One submit through the receiver: its body, its key, and what each answer means."""

    body: dict[str, Any]
    key: str
    retries: int = SUBMIT_RETRIES

    @classmethod
    def build(
        cls, prompt: str | None, *, model: str, idempotency_key: str | None, retries: int, **fields: Any
    ) -> SubmitPlan:
        if "callback_url" in fields:
            raise TypeError("callback_url is set by the receiver (its own webhook URL); leave it out")
        # The receiver's own field, not OpenRouter's: where it POSTs the signed notification.
        notify_url = fields.pop("notify_url", None)
        body = build_submit_body(model=model, prompt=prompt, **fields)
        if notify_url is not None:
            body["notify_url"] = notify_url
        return cls(body, idempotency_key or new_idempotency_key(), retries)

    @property
    def headers(self) -> dict[str, str]:
        return {IDEMPOTENCY_HEADER: self.key}

    def delay(self, attempt: int) -> float | None:
        """Seconds before retrying with the same key, or None: give up."""
        if attempt >= self.retries:
            return None
        ceiling = min(10.0, 0.5 * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def outcome(self, response: httpx.Response) -> dict[str, Any] | None:
        """The submission once submitted; None: retry (still under way, or nothing was sent); else raise."""
        if response.status_code == 503:
            return None
        if response.status_code == 409:
            error = error_from_response(response)
            raise IdempotencyKeyReused(error.message, status_code=409)
        if response.status_code == 400:
            field = _error_field(response)
            if field is not None:  # the receiver's catalog check: nothing was sent or kept
                error = error_from_response(response)
                raise ValidationError(field, None, error.message, allowed=_error_allowed(response))
        if response.status_code >= 300:
            raise error_from_response(response)
        try:
            payload = response.json()
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("state"), str):
            raise ResponseFormatError(
                "the receiver's answer to a submit is not a submission (is the URL right?)"
            )
        if payload["state"] == "submitted":
            return payload
        if payload["state"] == "submitting":
            return None
        raise self.unknown(
            f"the receiver does not know whether OpenRouter created the job: {payload.get('error')}", payload
        )

    def gave_up(self, last: OpenRouterVideoError | None) -> SubmissionOutcomeUnknown:
        return self.unknown(f"no settled answer from the receiver ({last or 'still submitting'})", None)

    def unknown(self, why: str, submission: dict[str, Any] | None) -> SubmissionOutcomeUnknown:
        ref = submission["id"] if submission else self.key
        error = SubmissionOutcomeUnknown(
            f"{why}; it is never resubmitted: retry with the same Idempotency-Key {self.key!r} (never a new "
            f"one) or see GET /submissions/{ref}"
        )
        error.idempotency_key = self.key  # type: ignore[attr-defined]
        error.submission = submission  # type: ignore[attr-defined]
        return error


def _error_detail(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except (ValueError, UnicodeDecodeError):
        return {}
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def _error_field(response: httpx.Response) -> str | None:
    field = _error_detail(response).get("field")
    return field if isinstance(field, str) else None


def _error_allowed(response: httpx.Response) -> tuple[Any, ...] | None:
    allowed = _error_detail(response).get("allowed")
    return tuple(allowed) if isinstance(allowed, list) else None


class AsyncReceiverClient:
    """The receiver's submit and records over HTTP, awaited (see `ReceiverClient` for the rest)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = SUBMIT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        base = httpx.URL(url.strip().rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"receiver URL must be http(s)://host[:port], got {url!r}")
        self.url = str(base)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:  # never the token
        return f"AsyncReceiverClient({self.url!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncReceiverClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def submit(
        self,
        prompt: str | None = None,
        *,
        model: str,
        idempotency_key: str | None = None,
        retries: int = SUBMIT_RETRIES,
        **fields: Any,
    ) -> dict[str, Any]:
        """Submit a job through the receiver, exactly once: the submission (`state` submitted,
        `job_id`, `job`). Takes the fields of `AsyncOpenRouterVideo.submit` but `callback_url`, and
        `notify_url` (see `ReceiverClient.submit`)."""
        plan = SubmitPlan.build(
            prompt, model=model, idempotency_key=idempotency_key, retries=retries, **fields
        )
        last: OpenRouterVideoError | None = None
        for attempt in range(plan.retries + 1):
            try:
                response = await self._http.post(
                    f"{self.url}/jobs", json=plan.body, headers={**self._headers, **plan.headers}
                )
            except httpx.HTTPError as exc:
                last = translate_transport_error(exc)
            else:
                if (submission := plan.outcome(response)) is not None:
                    return submission
                last = error_from_response(response) if response.status_code >= 300 else None
            delay = plan.delay(attempt)
            if delay is None:
                break
            await asyncio.sleep(delay)
        raise plan.gave_up(last)

    async def submission(self, ref: str) -> dict[str, Any]:
        """A submission by its id or its Idempotency-Key (NotFoundError if none)."""
        return await self._get(f"/submissions/{quote(ref, safe='')}")

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._get(f"/jobs/{quote(job_id, safe='')}", job_id=job_id)

    async def wait(self, job_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT) -> dict[str, Any]:
        """The job's record once it is finished (terminal, every output stored or given up), by
        long-polls; see `ReceiverClient.wait`."""
        plan = WaitPlan(job_id, f"/jobs/{quote(job_id, safe='')}", timeout)

        async def get(path: str, params: dict[str, Any], request_timeout: httpx.Timeout) -> dict[str, Any]:
            return await self._get(path, job_id=job_id, params=params, timeout=request_timeout)

        return await wait_async(get, plan)

    async def usage(
        self, *, since: str | float | None = None, until: str | float | None = None, days: int | None = None
    ) -> dict[str, Any]:
        """`GET /usage` (see `ReceiverClient.usage`)."""
        given = {"since": since, "until": until, "days": days}
        return await self._get("/usage", params={k: v for k, v in given.items() if v is not None})

    async def _get(
        self,
        path: str,
        *,
        job_id: str | None = None,
        params: dict[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self._http.get(
                self.url + path,
                headers=self._headers,
                params=params,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, job_id=job_id) from exc
        if response.status_code >= 300:
            raise error_from_response(response, job_id=job_id)
        payload = response.json()
        if not isinstance(payload, dict):
            raise ResponseFormatError(f"the receiver answered GET {path} with something other than an object")
        return payload
