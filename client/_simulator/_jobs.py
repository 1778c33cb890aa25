"""Jobs: identity, the knobs frozen at submit, and status as a pure function of elapsed time.

Status is never stored: a job is `pending` for `pending` seconds after submission, then
`in_progress` for `in_progress` seconds, then its terminal `outcome`. Polls and the webhook task
use the same deadline, so they always agree. All mutation happens on the server's event loop.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from .._types import CANCELLED, COMPLETED, EXPIRED, FAILED, IN_PROGRESS, PENDING
from ._config import Faults, SimulatorConfig
from ._knobs import KnobError
from ._mp4 import check_size
from ._pricing import estimate_cost
from ._validate import VideoRequest
from ._video import DEFAULT_VIDEO, VideoSpec, video_for

ERROR_TEXT = {
    FAILED: "Content policy violation",
    CANCELLED: "Job was cancelled",
    EXPIRED: "Job exceeded maximum time to live",
}
_ALNUM = string.ascii_letters + string.digits


def _random_alnum(n: int = 20) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def new_job_id(now: float | None = None) -> str:
    """`gen-vid-<unix seconds>-<20 alphanumerics>`, the newest documented id format."""
    return f"gen-vid-{int(time.time() if now is None else now)}-{_random_alnum()}"


@dataclass(eq=False)
class Job:
    """One simulated job. Times: `created_at` is wall clock, `created_mono` is monotonic."""

    id: str
    model: str
    body: dict[str, Any]
    base_url: str
    webhook_url: str | None
    created_at: float
    created_mono: float
    pending: float
    in_progress: float
    outcome: str
    webhook: str
    copies: int
    delay: float
    outputs: int
    bytes: int
    signed_url_ttl: int
    generation_id: str
    cost: float | None
    gone: bool | None = None
    """Per-job override; None follows the live global `Faults.gone`."""
    rate: float | None = None
    """Per-job content throttle (bytes/s); None follows the live global `Faults.rate`."""
    overrides: dict[str, Any] = field(default_factory=dict)
    video: VideoSpec = DEFAULT_VIDEO
    """Frame size and length of every output (from the request, else the model's defaults)."""

    @property
    def runtime(self) -> float:
        return self.pending + self.in_progress

    @property
    def terminal_mono(self) -> float:
        return self.created_mono + self.runtime

    @property
    def finished_at(self) -> float:
        """Wall-clock time the job reaches (or reached) its terminal status."""
        return self.created_at + self.runtime

    @property
    def expires_at(self) -> int:
        return int(self.finished_at + self.signed_url_ttl)

    def status(self, now_mono: float | None = None) -> str:
        elapsed = (time.monotonic() if now_mono is None else now_mono) - self.created_mono
        if elapsed < self.pending:
            return PENDING
        if elapsed < self.runtime:
            return IN_PROGRESS
        return self.outcome

    def is_gone(self, faults: Faults) -> bool:
        return faults.gone if self.gone is None else self.gone

    def content_rate(self, faults: Faults) -> float | None:
        return faults.rate if self.rate is None else self.rate

    @property
    def error(self) -> str | None:
        return ERROR_TEXT.get(self.outcome)


def build_job(
    request: VideoRequest,
    overrides: dict[str, Any],
    config: SimulatorConfig,
    base_url: str,
    now: float | None = None,
) -> Job:
    """A new job: per-job overrides win over global faults, which win over the config."""
    faults = config.faults
    wall = time.time() if now is None else now

    def knob(name: str, default: Any = None) -> Any:
        if name in overrides:
            return overrides[name]
        value = getattr(faults, name)
        return default if value is None else value

    outcome = knob("outcome")
    video = video_for(request.model, request.duration, request.resolution, request.aspect_ratio, request.size)
    size = int(knob("bytes", config.content_bytes))
    try:
        check_size(size, video)
    except ValueError as exc:
        raise KnobError(f"simulator knob bytes={size}: {exc}") from None
    return Job(
        id=new_job_id(wall),
        model=request.model_id,
        body=request.body,
        base_url=base_url,
        webhook_url=request.callback_url or config.workspace_webhook_url,
        created_at=wall,
        created_mono=time.monotonic(),
        pending=float(knob("pending", config.pending_seconds)),
        in_progress=float(knob("in_progress", config.in_progress_seconds)),
        outcome=outcome,
        webhook=knob("webhook"),
        copies=int(knob("copies")),
        delay=float(knob("delay")),
        outputs=int(knob("outputs")),
        bytes=size,
        signed_url_ttl=int(config.signed_url_ttl),
        generation_id=f"gen-{int(wall)}-{_random_alnum()}",
        cost=estimate_cost(request) if outcome == COMPLETED else None,
        gone=overrides.get("gone"),
        rate=overrides.get("rate"),
        overrides=dict(overrides),
        video=video,
    )


class JobStore:
    """Jobs by id. Only touched from the event loop; reads from other threads are dict lookups."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        self._jobs[job.id] = job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)
