"""Retention: what the receiver deletes once it is old enough (the policy; a backend's `prune` applies it).

Three independent policies, each in days (unset: kept forever):

- videos (RECEIVER_RETENTION_DAYS): the content of outputs downloaded longer ago than that. The
  output record stays, in state `deleted`; its `updated_at` says when and its `error` why.
- job records (RECEIVER_RECORD_RETENTION_DAYS): jobs not updated for that long, with their events,
  outputs and any content left. Never a job with an output still pending or downloading, nor one
  the fallback is still polling.
- stored deliveries (RECEIVER_DELIVERY_RETENTION_DAYS): deliveries received that long ago. Never a
  pending one (acknowledged, not applied yet).

A backend applies the records' part in one transaction; the caller deletes the content after it
committed, so a crash in between leaves content no record points to, never a record pointing to none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY = 86400.0


@dataclass(frozen=True)
class Policy:
    video_days: float | None = None
    record_days: float | None = None
    delivery_days: float | None = None

    @property
    def empty(self) -> bool:
        return self.video_days is None and self.record_days is None and self.delivery_days is None

    def video_cutoff(self, now: float) -> float | None:
        """Outputs downloaded (updated) before this lose their content (None: kept)."""
        return None if self.video_days is None else now - self.video_days * DAY

    def record_cutoff(self, now: float) -> float | None:
        """Jobs not updated since this go (None: kept), unless still downloading or polled."""
        return None if self.record_days is None else now - self.record_days * DAY

    def delivery_cutoff(self, now: float) -> float | None:
        """Deliveries received before this go (None: kept), unless pending."""
        return None if self.delivery_days is None else now - self.delivery_days * DAY

    def video_deleted_reason(self) -> str:
        """The `error` of an output whose content retention deleted (and its event's detail)."""
        return f"deleted by retention: downloaded over {self.video_days:g} days ago (RECEIVER_RETENTION_DAYS)"


@dataclass
class Pruned:
    """What one pass removed (or, in a dry run, would remove)."""

    videos: int = 0  # outputs whose content was deleted (record kept, state `deleted`)
    jobs: int = 0  # job records deleted
    deliveries: int = 0  # stored deliveries deleted
    delivery_bytes: int = 0  # their bodies and headers (the database keeps the pages for reuse)
    content_keys: list[str] = field(default_factory=list)  # content to delete once committed
    freed_bytes: int = 0  # of that content, set by the caller once deleted (or measured, in a dry run)

    @property
    def anything(self) -> bool:
        return bool(self.videos or self.jobs or self.deliveries)

    def summary(self) -> str:
        return (
            f"{self.videos} video(s) deleted, {self.jobs} job record(s), {self.deliveries} stored "
            f"deliveries ({self.delivery_bytes} bytes); {self.freed_bytes} bytes of video freed"
        )
