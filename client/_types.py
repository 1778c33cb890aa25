"""Typed views of OpenRouter's video API objects. Unknown fields are kept in `.raw`; null stays None."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

PENDING = "pending"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"

TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED, EXPIRED})
ALL_STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, EXPIRED)

RESOLUTIONS = ("360p", "480p", "720p", "768p", "1080p", "1K", "2K", "4K")
ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21")
FRAME_TYPES = ("first_frame", "last_frame")


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _opt_list(value: Any) -> tuple[Any, ...] | None:
    return tuple(value) if isinstance(value, list) else None


def _opt_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Usage:
    cost: float | None
    is_byok: bool | None

    @classmethod
    def from_api(cls, data: Any) -> Usage | None:
        if not isinstance(data, dict):
            return None
        cost = data.get("cost")
        return cls(
            cost=float(cost) if cost is not None and _finite_number(cost) else None,
            is_byok=_opt_bool(data.get("is_byok")),
        )


@dataclass(frozen=True)
class VideoJob:
    """One video generation job as OpenRouter reports it (poll response or webhook data)."""

    id: str
    status: str
    polling_url: str | None = None
    generation_id: str | None = None
    model: str | None = None
    error: str | None = None
    unsigned_urls: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    expires_at: int | None = None
    usage: Usage | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> VideoJob:
        if not isinstance(data, dict):
            raise ValueError("job is not a JSON object")
        job_id, status = data.get("id"), data.get("status")
        if not isinstance(job_id, str) or not job_id:
            raise ValueError("job has no 'id'")
        if not isinstance(status, str) or not status:
            raise ValueError("job has no 'status'")
        return cls(
            id=job_id,
            status=status,
            polling_url=_opt_str(data.get("polling_url")),
            generation_id=_opt_str(data.get("generation_id")),
            model=_opt_str(data.get("model")),
            error=_opt_str(data.get("error")),
            unsigned_urls=_str_list(data.get("unsigned_urls")),
            urls=_str_list(data.get("urls")),
            expires_at=_opt_int(data.get("expires_at")),
            usage=Usage.from_api(data.get("usage")),
            raw=data,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def output_count(self) -> int:
        """How many outputs the job announces (at least one once completed)."""
        n = max(len(self.unsigned_urls), len(self.urls))
        return n if n else (1 if self.status == COMPLETED else 0)

    def signed_url(self, index: int, *, now: float | None = None, margin: float = 30.0) -> str | None:
        """The key-free signed URL for output `index`, if present and not about to expire."""
        if index >= len(self.urls):
            return None
        if self.expires_at is not None and (time.time() if now is None else now) + margin >= self.expires_at:
            return None
        return self.urls[index]


@dataclass(frozen=True)
class VideoModel:
    """An entry of `GET /videos/models`. `None` means OpenRouter does not say (unknown)."""

    id: str
    canonical_slug: str | None
    name: str | None
    created: int | None
    description: str | None
    hugging_face_id: str | None
    supported_resolutions: tuple[str, ...] | None
    supported_aspect_ratios: tuple[str, ...] | None
    supported_sizes: tuple[str, ...] | None
    supported_durations: tuple[int, ...] | None
    supported_frame_images: tuple[str, ...] | None
    upscale_factor: dict[str, float] | None
    creativity: tuple[int, ...] | None
    generate_audio: bool | None
    seed: bool | None
    pricing_skus: dict[str, str] | None
    allowed_passthrough_parameters: tuple[str, ...] | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> VideoModel:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ValueError("model entry has no 'id'")
        upscale = data.get("upscale_factor")
        pricing = data.get("pricing_skus")
        return cls(
            id=data["id"],
            canonical_slug=_opt_str(data.get("canonical_slug")),
            name=_opt_str(data.get("name")),
            created=_opt_int(data.get("created")),
            description=_opt_str(data.get("description")),
            hugging_face_id=_opt_str(data.get("hugging_face_id")),
            supported_resolutions=_opt_list(data.get("supported_resolutions")),
            supported_aspect_ratios=_opt_list(data.get("supported_aspect_ratios")),
            supported_sizes=_opt_list(data.get("supported_sizes")),
            supported_durations=_opt_list(data.get("supported_durations")),
            supported_frame_images=_opt_list(data.get("supported_frame_images")),
            upscale_factor=dict(upscale) if isinstance(upscale, dict) else None,
            creativity=_opt_list(data.get("creativity")),
            generate_audio=_opt_bool(data.get("generate_audio")),
            seed=_opt_bool(data.get("seed")),
            pricing_skus={str(k): str(v) for k, v in pricing.items()} if isinstance(pricing, dict) else None,
            allowed_passthrough_parameters=_opt_list(data.get("allowed_passthrough_parameters")),
            raw=data,
        )


@dataclass(frozen=True)
class DownloadResult:
    path: str
    bytes: int
    sha256: str
    content_type: str | None
