"""A small synchronous client for the webhook receiver's query API (`openrouter-video serve`).

    from openrouter_video import ReceiverClient
    with ReceiverClient("https://hooks.example.com", token) as rx:   # RECEIVER_URL, RECEIVER_API_TOKEN
        for job in rx.jobs(status="failed", since="2026-12-01"):    # follows the cursors
            print(job["id"], job["error"])
        rx.reprocess()                                              # apply what failed, after a fix
        sub = rx.submit("a red fox", model="google/veo-3.1", duration=4)  # paid exactly once
        record = rx.wait(sub["job_id"], timeout=600)                # long-polls, no polling loop

Records are plain dicts exactly as the API returns them (times ISO 8601 UTC). Errors come from the
same tree as the OpenRouter client's (`openrouter_video._exceptions`): an error status is an
`APIError` subclass (401 AuthenticationError, 404 NotFoundError, ...) carrying the receiver's
message, no answer is a `TransportError`, an answer of the wrong shape a `ResponseFormatError`.
The receiver is reached over HTTP only: this module does not import it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from ._base import error_from_response, translate_transport_error
from ._exceptions import OpenRouterVideoError, ResponseFormatError
from ._receiver_submit import SUBMIT_RETRIES, SUBMIT_TIMEOUT, SubmitPlan
from ._receiver_wait import DEFAULT_WAIT_TIMEOUT, WaitPlan, wait_sync

__all__ = ["DEFAULT_RECEIVER_TIMEOUT", "ReceiverClient"]

DEFAULT_RECEIVER_TIMEOUT = 30.0
PAGE_LIMIT = 500  # the receiver's largest page


class ReceiverClient:
    """The receiver's query API at `url` (its root, e.g. `https://hooks.example.com`), with its bearer
    `token` (`RECEIVER_API_TOKEN`; None for a receiver served with `--no-auth`)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_RECEIVER_TIMEOUT,
        http_client: httpx.Client | None = None,
    ) -> None:
        base = httpx.URL(url.strip().rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"receiver URL must be http(s)://host[:port], got {url!r}")
        self.url = str(base)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._headers = headers

    def __repr__(self) -> str:  # never the token
        return f"ReceiverClient({self.url!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ReceiverClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- jobs ----------------------------------------------------------------------------------

    def jobs_page(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        since: str | float | None = None,
        until: str | float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of job records, newest first, and the cursor of the next page (None: the last)."""
        params = _params(status=status, model=model, since=since, until=until, limit=limit, cursor=cursor)
        page = self._get_object("/jobs", params)
        return _list_of(page, "jobs"), _cursor_of(page)

    def jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        since: str | float | None = None,
        until: str | float | None = None,
        page_size: int = PAGE_LIMIT,
        cursor: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every matching job record, newest first, following the cursors page by page."""
        while True:
            page, cursor = self.jobs_page(
                status=status, model=model, since=since, until=until, limit=page_size, cursor=cursor
            )
            yield from page
            if cursor is None:
                return

    def job(self, job_id: str) -> dict[str, Any]:
        """One job record with its outputs and events (NotFoundError if the receiver has none)."""
        return self._get_object(f"/jobs/{quote(job_id, safe='')}", {}, job_id=job_id)

    def wait(self, job_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT) -> dict[str, Any]:
        """The job's record once it is finished: terminal, every output stored (or given up), by
        long-polls (`GET /jobs/{id}?wait=`; see `openrouter_video._receiver_wait`). A failed job is
        returned, not raised; JobNotFinished at the deadline; NotFoundError if the receiver has none."""
        plan = WaitPlan(job_id, f"/jobs/{quote(job_id, safe='')}", timeout)

        def get(path: str, params: dict[str, Any], request_timeout: httpx.Timeout) -> dict[str, Any]:
            return self._request_object("GET", path, params=params, job_id=job_id, timeout=request_timeout)

        return wait_sync(get, plan)

    # -- submitting through the receiver ---------------------------------------------------------

    def submit(
        self,
        prompt: str | None = None,
        *,
        model: str,
        idempotency_key: str | None = None,
        retries: int = SUBMIT_RETRIES,
        **fields: Any,
    ) -> dict[str, Any]:
        """Submit a job through the receiver, exactly once (see `openrouter_video._receiver_submit`):
        the submission (`state` submitted, `job_id`, `job`). Retries reuse one Idempotency-Key, so a
        timeout never pays twice; `outcome_unknown` raises SubmissionOutcomeUnknown naming the
        submission. Takes the fields of `OpenRouterVideo.submit` but `callback_url`, and
        `notify_url`: where the receiver POSTs its signed notification when the job ends."""
        plan = SubmitPlan.build(
            prompt, model=model, idempotency_key=idempotency_key, retries=retries, **fields
        )
        last: OpenRouterVideoError | None = None
        for attempt in range(plan.retries + 1):
            try:
                response = self._http.post(
                    f"{self.url}/jobs",
                    json=plan.body,
                    headers={**self._headers, **plan.headers},
                    timeout=SUBMIT_TIMEOUT,
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
            time.sleep(delay)
        raise plan.gave_up(last)

    def submission(self, ref: str) -> dict[str, Any]:
        """A submission by its id or its Idempotency-Key (NotFoundError if none)."""
        return self._get_object(f"/submissions/{quote(ref, safe='')}", {})

    def usage(
        self, *, since: str | float | None = None, until: str | float | None = None, days: int | None = None
    ) -> dict[str, Any]:
        """`GET /usage`: spend by UTC day, model and token (`rows`: estimated, actual and counted USD),
        the totals, and the spending caps with what remains (`caps`). The window: `since`/`until`
        (ISO 8601 or unix seconds) or the last `days` UTC days; by default the current UTC month."""
        return self._get_object("/usage", _params(since=since, until=until, days=days))

    # -- deliveries ----------------------------------------------------------------------------

    def deliveries_page(
        self, *, state: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of stored deliveries, newest first. `state`: pending, failed, applied or
        unprocessed (failed or pending)."""
        page = self._get_object("/deliveries", _params(state=state, limit=limit, cursor=cursor))
        return _list_of(page, "deliveries"), _cursor_of(page)

    def deliveries(
        self, *, state: str | None = None, page_size: int = PAGE_LIMIT, cursor: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every matching stored delivery, newest first, following the cursors."""
        while True:
            page, cursor = self.deliveries_page(state=state, limit=page_size, cursor=cursor)
            yield from page
            if cursor is None:
                return

    def reprocess(self, ids: list[int] | None = None) -> dict[str, Any]:
        """Apply stored deliveries not applied (all of them, or `ids`). Returns the receiver's answer:
        `{"reprocessed": [{"id", "applied", "error", ...}], "applied": N, "unprocessed": M}`."""
        body = {"ids": list(ids)} if ids else None
        return self._request_object("POST", "/deliveries/reprocess", json=body)

    # -- plumbing ------------------------------------------------------------------------------

    def _get_object(self, path: str, params: dict[str, Any], *, job_id: str | None = None) -> dict[str, Any]:
        return self._request_object("GET", path, params=params, job_id=job_id)

    def _request_object(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        job_id: str | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> dict[str, Any]:
        try:
            response = self._http.request(
                method,
                self.url + path,
                params=params,
                json=json,
                headers=self._headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, job_id=job_id) from exc
        if response.status_code >= 300:
            raise error_from_response(response, job_id=job_id)
        try:
            payload = response.json()
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            raise ResponseFormatError(
                f"the receiver at {self.url} answered {method} {path} with something other than a JSON "
                "object (is the URL the receiver's root?)",
                job_id=job_id,
            )
        return payload


def _params(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None and value != ""}


def _list_of(page: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = page.get(key)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ResponseFormatError(f"the receiver's answer has no list of {key}")
    return items


def _cursor_of(page: dict[str, Any]) -> str | None:
    cursor = page.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise ResponseFormatError("the receiver's next_cursor is not a string")
    return cursor or None
