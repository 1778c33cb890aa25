"""Everything one running simulator holds: config, jobs, signer, webhook tasks, counters.

Kept apart from the routes so tests can reach it (`app.state.simulator`) and so shutdown has one
place that cancels every pending webhook task.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

from ._catalog import CATALOG
from ._config import SimulatorConfig
from ._delivery import DeliveryLog, WebhookSender
from ._jobs import Job, JobStore
from ._traffic import OutputTraffic, PollTraffic
from ._urls import UrlSigner
from ._views import webhook_body

logger = logging.getLogger("client.simulator")

REQUEST_KINDS = ("submits", "polls", "content", "signed_content", "models")
"""Request counters; `content` includes `signed_content` (downloads through the storage URL)."""


class SimulatorState:
    """Runtime state of one app instance."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.jobs = JobStore()
        self.signer = UrlSigner()
        self.deliveries = DeliveryLog()
        self.sender = WebhookSender(config, self.deliveries)
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self.served = OutputTraffic()
        self.polled = PollTraffic()

    @property
    def catalog(self) -> list[dict[str, Any]]:
        """The live catalog (not a copy): read, never mutate."""
        return CATALOG if self.config.catalog is None else self.config.catalog

    def count(self, kind: str) -> None:
        with self._count_lock:
            self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        with self._count_lock:
            return {kind: self._counts[kind] for kind in REQUEST_KINDS}

    def reset_counts(self) -> None:
        with self._count_lock:
            self._counts.clear()
        self.served.clear()
        self.polled.clear()

    def add_job(self, job: Job) -> None:
        """Store the job and, if it has a webhook target, schedule its delivery task."""
        self.jobs.add(job)
        if job.webhook_url and job.webhook != "drop":
            task = asyncio.get_running_loop().create_task(
                self._deliver_when_done(job), name=f"webhook-{job.id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def pending_deliveries(self) -> int:
        return len(self._tasks)

    async def _deliver_when_done(self, job: Job) -> None:
        try:
            await asyncio.sleep(max(0.0, job.terminal_mono - time.monotonic()) + job.delay)
            await self.sender.deliver(job, webhook_body(job, self.config, self.signer))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not kill the loop silently
            logger.exception("webhook delivery for %s failed", job.id)

    async def aclose(self) -> None:
        """Cancel pending webhook tasks and close the HTTP client (lifespan shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.sender.aclose()
