"""Webhook delivery: sign, POST, retry with exponential backoff, and log every attempt.

The real retry policy is undocumented; the simulator retries any non-2xx answer or transport error
up to `webhook_attempts` times, waiting `webhook_backoff` seconds before the first retry and
doubling. Each attempt is signed afresh (new timestamp), like a real redelivery would be. Modes:
`normal`; `drop` (send nothing, log nothing); `bad_signature` (signed with a wrong secret);
`stale` / `future` (correctly signed, timestamp 1000 s in the past / future). Without a configured
secret no signature header is sent, except in `bad_signature` mode.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from .._webhooks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from ._config import SimulatorConfig
from ._jobs import Job

SKEW_SECONDS = 1000
USER_AGENT = "openrouter-video-simulator"


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of a webhook (or its failure to get an answer)."""

    job_id: str
    url: str
    copy: int
    attempt: int
    status: int | None
    error: str | None
    headers: dict[str, str]
    body: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeliveryLog:
    """Append-only attempt log, readable from any thread."""

    def __init__(self) -> None:
        self._items: list[DeliveryAttempt] = []
        self._lock = threading.Lock()

    def add(self, item: DeliveryAttempt) -> None:
        with self._lock:
            self._items.append(item)

    def totals(self) -> dict[str, int]:
        """Attempts logged, and how many were answered 2xx."""
        with self._lock:
            acked = sum(1 for a in self._items if a.status is not None and 200 <= a.status < 300)
            return {"attempts": len(self._items), "acked": acked}

    def list(self, job_id: str | None = None) -> list[DeliveryAttempt]:
        with self._lock:
            return [a for a in self._items if job_id is None or a.job_id == job_id]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class WebhookSender:
    """Delivers terminal-status events for jobs; one shared HTTP client per app."""

    def __init__(self, config: SimulatorConfig, log: DeliveryLog) -> None:
        self._config = config
        self._log = log
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: never route loopback deliveries through an environment proxy.
            verify: ssl.SSLContext | bool = True
            if self._config.webhook_cafile:
                verify = ssl.create_default_context(cafile=self._config.webhook_cafile)
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False, verify=verify)
        return self._client

    async def deliver(self, job: Job, body: bytes) -> None:
        """Send `job.copies` concurrent deliveries of `body`, each with its own retries."""
        if job.webhook == "drop" or not job.webhook_url:
            return
        await asyncio.gather(
            *(self._deliver_copy(job, job.webhook_url, body, c) for c in range(1, job.copies + 1))
        )

    def headers(self, job: Job, body: bytes, now: float | None = None) -> dict[str, str]:
        """Headers for one attempt, signed according to the job's webhook mode."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: f"{job.id}-{job.outcome}",
        }
        t = int(time.time() if now is None else now)
        secret = self._config.webhook_secret
        if job.webhook == "bad_signature":
            headers[SIGNATURE_HEADER] = sign(f"wrong-{secrets.token_hex(8)}-{secret or ''}", body, t)
        elif secret:
            skew = {"stale": -SKEW_SECONDS, "future": SKEW_SECONDS}.get(job.webhook, 0)
            headers[SIGNATURE_HEADER] = sign(secret, body, t + skew)
        return headers

    async def _deliver_copy(self, job: Job, url: str, body: bytes, copy: int) -> bool:
        attempts = max(1, int(self._config.webhook_attempts))
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, int(self._config.webhook_concurrency)))
        for attempt in range(1, attempts + 1):
            status: int | None = None
            error: str | None = None
            async with self._slots:  # signed once its turn came: the wait never ages the timestamp
                headers = self.headers(job, body)
                try:
                    response = await self._http().post(
                        url, content=body, headers=headers, timeout=self._config.webhook_timeout
                    )
                    status = response.status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
            self._log.add(
                DeliveryAttempt(
                    job_id=job.id,
                    url=url,
                    copy=copy,
                    attempt=attempt,
                    status=status,
                    error=error,
                    headers=headers,
                    body=body.decode(),
                    time=time.time(),
                )
            )
            if status is not None and 200 <= status < 300:
                return True
            if attempt < attempts:
                await asyncio.sleep(self._config.webhook_backoff * 2 ** (attempt - 1))
        return False
